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
        if let Some(end) = head_end(&buf[..n]) {
            break end;
        }
        if n == buf.len() {
            return Ok(());
        }
    };
    s.write_all(switching_protocols(&buf[..end]).as_bytes()).await?;
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

#[path = "../handshake.rs"]
mod handshake;
use handshake::{head_end, switching_protocols};

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
