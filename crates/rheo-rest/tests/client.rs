//! The client against a one-shot HTTP server on loopback: request line and body as Flink expects
//! them, and each kind of failure mapped to its error variant.

use rheo_rest::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one request with `status` and `body`, and returns the raw request text it received.
async fn serve_once(status: &'static str, body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let len = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + len || n == 0 {
                    break;
                }
            }
        }
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(reply.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&buf).to_string()
    });
    (url, task)
}

#[tokio::test]
async fn stop_with_savepoint_posts_flink_body() {
    let (url, server) = serve_once("202 Accepted", r#"{"request-id":"t-1"}"#).await;
    let client = RestClient::new(url);
    let req = StopWithSavepointRequest { target_directory: Some("s3://b/sp".into()), drain: false };
    let trig = client.stop_with_savepoint("ab12", &req).await.unwrap();
    assert_eq!(trig.request_id, "t-1");
    let seen = server.await.unwrap();
    assert!(seen.starts_with("POST /jobs/ab12/stop HTTP/1.1"), "{seen}");
    assert!(seen.ends_with(r#"{"targetDirectory":"s3://b/sp","drain":false}"#), "{seen}");
}

#[tokio::test]
async fn cancel_accepts_empty_body() {
    let (url, server) = serve_once("202 Accepted", "").await;
    RestClient::new(url).cancel_job("ab12").await.unwrap();
    assert!(server.await.unwrap().starts_with("PATCH /jobs/ab12?mode=cancel HTTP/1.1"));
}

#[tokio::test]
async fn not_found_is_its_own_error() {
    let (url, _server) =
        serve_once("404 Not Found", r#"{"errors":["NotFoundException: Job x not found\n\tat y"]}"#).await;
    match RestClient::new(url).job("x").await {
        Err(Error::NotFound(msg)) => assert_eq!(msg, "NotFoundException: Job x not found"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn server_error_is_http() {
    let (url, _server) = serve_once("500 Internal Server Error", r#"{"errors":["boom"]}"#).await;
    match RestClient::new(url).overview().await {
        Err(Error::Http { status: 500, message }) => assert_eq!(message, "boom"),
        other => panic!("expected Http 500, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_shape_is_decode() {
    let (url, _server) = serve_once("200 OK", r#"{"jobs":"nope"}"#).await;
    assert!(matches!(RestClient::new(url).jobs().await, Err(Error::Decode { .. })));
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    assert!(matches!(RestClient::new(url).overview().await, Err(Error::Unreachable(_))));
}
