//! HTTP/3 sink on quinn + h3.

use bytes::{Buf, Bytes};
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};

use crate::error::Result;

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Accepts QUIC connections until the endpoint closes.
pub async fn accept_loop(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            if let Ok(conn) = incoming.await {
                // Peers that close abruptly are routine under load.
                let _ = serve(conn).await;
            }
        });
    }
}

async fn serve(conn: quinn::Connection) -> Result<()> {
    let mut h3 = h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn)).await?;
    while let Some(resolver) = h3.accept().await? {
        tokio::spawn(async move {
            if let Ok((req, stream)) = resolver.resolve_request().await {
                let _ = handle(req, stream).await;
            }
        });
    }
    Ok(())
}

async fn handle(req: Request<()>, mut stream: Stream) -> Result<()> {
    let path = req.uri().path();
    let (status, reply) = if req.method() != Method::POST {
        (StatusCode::METHOD_NOT_ALLOWED, "POST only\n".to_string())
    } else if path.starts_with("/discard") {
        let mut count: u64 = 0;
        while let Some(data) = stream.recv_data().await? {
            count += data.remaining() as u64;
        }
        (StatusCode::OK, format!("{count}\n"))
    } else if path.starts_with("/echo") {
        let mut response = Response::new(());
        if let Some(value) = req.headers().get(CONTENT_TYPE) {
            response.headers_mut().insert(CONTENT_TYPE, value.clone());
        }
        stream.send_response(response).await?;
        while let Some(mut data) = stream.recv_data().await? {
            let len = data.remaining();
            stream.send_data(data.copy_to_bytes(len)).await?;
        }
        return Ok(stream.finish().await?);
    } else {
        (StatusCode::NOT_FOUND, "use /discard or /echo\n".to_string())
    };
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    stream.send_response(response).await?;
    stream.send_data(Bytes::from(reply)).await?;
    Ok(stream.finish().await?)
}
