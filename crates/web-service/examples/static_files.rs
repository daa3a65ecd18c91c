//! Serves a directory: `static_files DIR ADDR` (cleartext HTTP/1.1 and h2c).
//!
//! Try `curl -v http://ADDR/file` then repeat with `-H 'if-none-match: <etag>'` (304)
//! or `-H 'range: bytes=0-9'` (206).

use web_service::{Listen, Server, ServerConfig, StaticFiles};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(addr)) = (args.next(), args.next()) else {
        return Err(
            "usage: static_files DIR ADDR   (e.g. static_files ./public 127.0.0.1:8080)".into(),
        );
    };
    let listen = Listen {
        http: Some(addr.parse()?),
        https: None,
    };
    let server = Server::bind(ServerConfig::default(), listen).await?;
    if let Some(addr) = server.http_addr() {
        println!("serving {dir} on http://{addr}/");
    }
    server
        .serve(StaticFiles::new(dir), web_service::ctrl_c_or_sigterm())
        .await?;
    Ok(())
}
