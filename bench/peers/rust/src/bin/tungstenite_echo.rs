//! tokio-tungstenite echo server, one core: a current-thread runtime. Text and binary
//! messages are forwarded back (the crate's own echo-server pattern: read.forward(write),
//! which flushes when no more input is ready).
//!   tungstenite_echo PORT     (0 picks a free port; the port is printed)
use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};

async fn accept(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let (write, read) = ws.split();
    let _ = read.try_filter(|m| future::ready(m.is_text() || m.is_binary())).forward(write).await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("tungstenite_echo listening on ws://127.0.0.1:{}", listener.local_addr()?.port());
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::task::spawn(accept(stream));
    }
}
