//! raw_echo: the cheapest possible "server", for checking that the load generator is
//! not the bottleneck. It answers the WebSocket handshake, then copies every byte back
//! unchanged (so the client gets its own masked frames: run the load generator with
//! --allow-masked). Not a WebSocket server; never a row of the results.
//!   raw_echo PORT     (0 picks a free port; the port is printed)
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn serve(mut s: TcpStream) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0;
    let end = loop {
        let r = s.read(&mut buf[n..]).await?;
        if r == 0 {
            return Ok(());
        }
        n += r;
        if let Some(p) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if n == buf.len() {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let key = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-key")).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_default();
    let accept = accept_key(&key);
    s.write_all(format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").as_bytes()).await?;
    if n > end {
        s.write_all(&buf[end..n]).await?;
    }
    loop {
        let r = s.read(&mut buf).await?;
        if r == 0 {
            return Ok(());
        }
        s.write_all(&buf[..r]).await?;
    }
}

#[path = "../accept_key.rs"]
mod accept_key;
use accept_key::accept_key;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("raw_echo listening on ws://127.0.0.1:{}", listener.local_addr()?.port());
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::task::spawn(async move {
            let _ = serve(stream).await;
        });
    }
}
