//! The worker API's wire contract (`docs/worker-api.md`), call by call,
//! driven with curl as the docs promise, over HTTP/1.1 and h2c.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use upload_response_server::Running;

mod common;
use common::{TOKEN, TestServer};

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Runs curl (`-s -D`) with `args`, returns status, head and body.
async fn curl(args: Vec<String>, stdin: Option<Vec<u8>>) -> Reply {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let head = dir.path().join("head");
        let mut child = Command::new("curl")
            .arg("-s")
            .arg("-D")
            .arg(&head)
            .args(&args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl must be installed");
        if let Some(data) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&data).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let headers = std::fs::read_to_string(&head).unwrap_or_default();
        // With `100 Continue` or several heads, the last status line counts.
        let status = headers
            .lines()
            .rfind(|l| l.starts_with("HTTP/"))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Reply {
            status,
            headers,
            body: out.stdout,
        }
    })
    .await
    .unwrap()
}

struct Api {
    addr: SocketAddr,
    h2c: bool,
}

impl Api {
    /// A call without extra headers or body.
    async fn on(&self, method: &str, path: &str) -> Reply {
        self.call(method, path, &[], None).await
    }

    async fn call(&self, method: &str, path: &str, extra: &[&str], stdin: Option<&[u8]>) -> Reply {
        let mut args = vec![
            "-X".to_owned(),
            method.to_owned(),
            "-H".to_owned(),
            format!("Authorization: Bearer {TOKEN}"),
        ];
        if self.h2c {
            args.push("--http2-prior-knowledge".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        if stdin.is_some() {
            args.extend(["--data-binary".into(), "@-".into()]);
        }
        args.push(format!("http://{}{path}", self.addr));
        curl(args, stdin.map(<[u8]>::to_vec)).await
    }
}

/// A client request in the background (curl), returning its reply.
fn client(running: &Running, path: &str, body: &'static [u8]) -> tokio::task::JoinHandle<Reply> {
    let url = format!("http://{}{path}", running.http.unwrap());
    tokio::spawn(curl(
        vec!["--data-binary".into(), "@-".into(), url],
        Some(body.to_vec()),
    ))
}

async fn claim(api: &Api, worker: &str, prefix: &str) -> (u64, serde_json::Value) {
    let r = api
        .on(
            "POST",
            &format!("/v1/claim?worker={worker}&prefix={prefix}&wait_ms=5000"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    (json["stream_id"].as_u64().unwrap(), json)
}

async fn contract(h2c: bool) {
    let server = TestServer::start(|cli| cli.https = Some("none".into())).await;
    let running = &server.running;
    let api = Api {
        addr: running.worker_api.unwrap(),
        h2c,
    };

    // Authentication.
    let anonymous = curl(
        vec![
            "-X".into(),
            "POST".into(),
            format!("http://{}/v1/claim?worker=w", api.addr),
        ],
        None,
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.header("www-authenticate").as_deref(),
        Some("Bearer")
    );
    let list_with = |authorization: String| {
        curl(
            vec![
                "-H".into(),
                authorization,
                format!("http://{}/v1/streams", api.addr),
            ],
            None,
        )
    };
    let wrong = list_with(format!("Authorization: Bearer {TOKEN}x")).await;
    assert_eq!(wrong.status, 401);
    let lowercase = list_with(format!("authorization: bearer {TOKEN}")).await;
    assert_eq!(lowercase.status, 200, "the scheme is case-insensitive");
    let metrics = curl(vec![format!("http://{}/metrics", api.addr)], None).await;
    assert_eq!(metrics.status, 200);

    // Parameters and empty long-polls.
    assert_eq!(api.on("POST", "/v1/claim").await.status, 400);
    let bad_wait = api.on("POST", "/v1/claim?worker=w&wait_ms=x").await;
    assert_eq!(bad_wait.status, 400);
    let empty = api
        .on("POST", "/v1/claim?worker=w&prefix=/c&wait_ms=50")
        .await;
    assert_eq!(empty.status, 204);
    for (method, path) in [
        ("GET", "/v1/streams/77/body?worker=w"),
        ("POST", "/v1/streams/77/claim?worker=w"),
        ("DELETE", "/v1/streams/77/claim?worker=w"),
        ("POST", "/v1/streams/77/readers/w"),
        ("GET", "/v1/streams/77/slots/1"),
    ] {
        let r = api.call(method, path, &[], None).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
    }
    let r = api
        .call(
            "POST",
            "/v1/streams/77/response?worker=w",
            &["-H", "x-ur-status: 200"],
            Some(b"x"),
        )
        .await;
    assert_eq!(r.status, 404);

    // A request, claimed by w1.
    let reply = client(running, "/c/1?q=1", b"0123456789");
    let (id, json) = claim(&api, "w1", "/c").await;
    assert_eq!(json["method"], "POST");
    assert_eq!(json["path"], "/c/1?q=1");
    assert_eq!(json["version"], "HTTP/1.1");
    assert!(
        json["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "content-length" && h[1] == "10"),
        "{json}"
    );
    let list = api.on("GET", "/v1/streams").await;
    let list: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(list[0]["id"].as_u64(), Some(id));
    assert_eq!(list[0]["response_owner"], "w1");
    assert_eq!(list[0]["readers"], 1);
    for key in ["method", "path", "request_last", "request_done", "age_ms"] {
        assert!(list[0].get(key).is_some(), "{key} missing: {list}");
    }

    // Raw slots.
    let s = |n: u64| format!("/v1/streams/{id}/slots/{n}?wait_ms=2000");
    let head = api.on("GET", &s(1)).await;
    assert_eq!(
        (head.status, head.header("x-ur-slot").as_deref()),
        (200, Some("headers"))
    );
    assert_eq!(&head.body[..4], b"HPKS");
    let body = api.on("GET", &s(2)).await;
    assert_eq!(
        (body.header("x-ur-slot").as_deref(), body.text().as_str()),
        (Some("body"), "0123456789")
    );
    let end = api.on("GET", &s(3)).await;
    assert_eq!(
        (
            end.status,
            end.header("x-ur-slot").as_deref(),
            end.body.len()
        ),
        (200, Some("end"), 0)
    );
    assert_eq!(api.on("GET", &s(4)).await.status, 400);
    assert_eq!(api.on("GET", &s(0)).await.status, 400);

    // Readers.
    let readers = format!("/v1/streams/{id}/readers/audit");
    assert_eq!(api.on("POST", &readers).await.status, 204);
    assert_eq!(api.on("POST", &readers).await.status, 409);
    assert_eq!(api.on("DELETE", &readers).await.status, 204);
    assert_eq!(api.on("DELETE", &readers).await.status, 409);

    // Only the owner writes; the others get 409.
    let respond = |w: &str| format!("/v1/streams/{id}/response?worker={w}");
    let r = api
        .call(
            "POST",
            &respond("w2"),
            &["-H", "x-ur-status: 200"],
            Some(b"x"),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = api
        .on("POST", &format!("/v1/streams/{id}/claim?worker=w2"))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        api.call("POST", &respond("w1"), &[], Some(b"x"))
            .await
            .status,
        400
    );

    // The owner reads the body, then gives the claim back: w2 gets the request.
    let body = api
        .on("GET", &format!("/v1/streams/{id}/body?worker=w1"))
        .await;
    assert_eq!((body.status, body.text().as_str()), (200, "0123456789"));
    let again = api
        .on("GET", &format!("/v1/streams/{id}/body?worker=w1"))
        .await;
    assert_eq!(again.status, 409);
    let renew = api
        .on("POST", &format!("/v1/streams/{id}/claim?worker=w1"))
        .await;
    assert_eq!(renew.status, 204);
    let release = api
        .on("DELETE", &format!("/v1/streams/{id}/claim?worker=w1"))
        .await;
    assert_eq!(release.status, 204);
    let (id2, _) = claim(&api, "w2", "/c").await;
    assert_eq!(id2, id, "the released request is offered again");
    let body = api
        .on("GET", &format!("/v1/streams/{id}/body?worker=w2"))
        .await;
    assert_eq!(body.text(), "0123456789");
    let r = api
        .call(
            "POST",
            &respond("w2"),
            &[
                "-H",
                "x-ur-status: 201",
                "-H",
                "x-test: yes",
                "-H",
                "content-type: text/x-done",
                "-H",
                "x-ur-ignored: 1",
            ],
            Some(b"answered by w2"),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        api.call(
            "POST",
            &respond("w2"),
            &["-H", "x-ur-status: 200"],
            Some(b"x")
        )
        .await
        .status,
        404
    );

    let reply = reply.await.unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(reply.text(), "answered by w2");
    assert_eq!(reply.header("x-test").as_deref(), Some("yes"));
    assert_eq!(reply.header("content-type").as_deref(), Some("text/x-done"));
    assert_eq!(reply.header("x-ur-ignored"), None);

    // A stream claimed with the seed primitive is written the same way.
    let reply = client(running, "/seed", b"abc");
    let id = loop {
        let list = api.on("GET", "/v1/streams").await;
        let list: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
        if let Some(id) = list[0]["id"].as_u64() {
            break id;
        }
    };
    let r = api
        .on("POST", &format!("/v1/streams/{id}/claim?worker=seed"))
        .await;
    assert_eq!(r.status, 204);
    let body = api
        .on("GET", &format!("/v1/streams/{id}/body?worker=seed"))
        .await;
    assert_eq!(body.text(), "abc");
    let r = api
        .call(
            "POST",
            &format!("/v1/streams/{id}/response?worker=seed"),
            &["-H", "x-ur-status: 200"],
            Some(b"seeded"),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let reply = reply.await.unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "seeded"));

    // Every call above is counted by route template and status.
    assert_eq!(api.on("GET", "/v1/nowhere").await.status, 404);
    let metrics = curl(vec![format!("http://{}/metrics", api.addr)], None).await;
    let text = metrics.text();
    let prefix = "upload_response_worker_api_";
    for line in [
        r#"calls_total{route="/v1/claim",status="401"} 1"#,
        r#"calls_total{route="/v1/streams",status="401"} 1"#,
        r#"calls_total{route="/v1/claim",status="200"} 2"#,
        r#"calls_total{route="/v1/claim",status="204"} 1"#,
        r#"calls_total{route="/v1/streams/{id}/body",status="404"} 1"#,
        r#"calls_total{route="/v1/streams/{id}/body",status="409"} 1"#,
        r#"calls_total{route="/v1/streams/{id}/response",status="204"} 2"#,
        r#"calls_total{route="unmatched",status="404"} 1"#,
        // w1 and w2 read "0123456789", seed read "abc".
        "body_bytes_total 23",
        // "answered by w2" and "seeded".
        "response_bytes_total 20",
        "claims_held 0",
        "leases_expired_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == format!("{prefix}{line}")),
            "{line} missing from:\n{text}"
        );
    }
    assert_eq!(text.matches("# EOF").count(), 0, "{text}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_over_http1() {
    contract(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_over_h2c() {
    contract(true).await;
}

/// A stream claimed by id (`POST /v1/streams/{id}/claim`) has a lease too:
/// its silent owner loses it, and `/v1/claim` hands the request to another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_by_id_expires_like_any_claim() {
    let server = TestServer::start(|cli| {
        cli.https = Some("none".into());
        cli.worker_lease_ms = Some(300.into());
    })
    .await;
    let running = &server.running;
    let api = Api {
        addr: running.worker_api.unwrap(),
        h2c: false,
    };
    let reply = client(running, "/lease", b"xyz");
    let id = loop {
        if let Some(&id) = running.service.stream_ids().first() {
            break id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let by_id = api
        .on("POST", &format!("/v1/streams/{id}/claim?worker=silent"))
        .await;
    assert_eq!(by_id.status, 204);
    let (again, _) = claim(&api, "heir", "/lease").await;
    assert_eq!(again, id, "the expired claim's request is offered again");
    let metrics = curl(vec![format!("http://{}/metrics", api.addr)], None).await;
    let text = metrics.text();
    for line in ["leases_expired_total 1", "claims_held 1"] {
        let line = format!("upload_response_worker_api_{line}");
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    let late = api
        .call(
            "POST",
            &format!("/v1/streams/{id}/response?worker=silent"),
            &["-H", "x-ur-status: 200"],
            Some(b"too late"),
        )
        .await;
    assert_eq!(late.status, 409, "{}", late.text());
    let r = api
        .call(
            "POST",
            &format!("/v1/streams/{id}/response?worker=heir"),
            &["-H", "x-ur-status: 200"],
            Some(b"from the heir"),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(reply.await.unwrap().text(), "from the heir");
    server.stop().await;
}

/// `max=K` takes the first request and those queued behind it in one call
/// (a JSON array); `inline_max=B` sends each body of at most B bytes that
/// has arrived along as `body_b64`, and such a body is not read again. A
/// larger body is read as before, and bad values are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_claim_takes_the_queue_and_small_bodies_come_along() {
    use base64::Engine as _;
    let server = TestServer::start(|cli| cli.https = Some("none".into())).await;
    let running = &server.running;
    let api = Api {
        addr: running.worker_api.unwrap(),
        h2c: false,
    };
    for bad in [
        "max=0",
        "max=65",
        "max=x",
        "inline_max=65537",
        "inline_max=-1",
    ] {
        let r = api.on("POST", &format!("/v1/claim?worker=w&{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let mut replies = Vec::new();
    for (path, body) in [
        ("/b/1", b"one".to_vec()),
        ("/b/2", b"two".to_vec()),
        ("/b/3", Vec::new()),
        ("/b/4", big.clone()),
    ] {
        let url = format!("http://{}{path}", running.http.unwrap());
        let reply = tokio::spawn(curl(
            vec!["--data-binary".into(), "@-".into(), url],
            Some(body.clone()),
        ));
        replies.push((path, body, reply));
    }
    // Every body has arrived before the claims: what comes along is
    // decided by size alone here.
    loop {
        let list = api.on("GET", "/v1/streams").await;
        let list: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
        let list = list.as_array().unwrap();
        if list.len() == 4 && list.iter().all(|s| s["request_done"] == true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut claimed = Vec::new();
    for max in [3, 8] {
        let r = api
            .on(
                "POST",
                &format!("/v1/claim?worker=w&prefix=/b&wait_ms=5000&max={max}&inline_max=100"),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let batch: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        claimed.extend(batch.as_array().expect("an array with max=K").clone());
        assert_eq!(claimed.len(), if max == 3 { 3 } else { 4 }, "{batch}");
    }
    for (path, sent, _) in &replies {
        let claim = claimed
            .iter()
            .find(|c| c["path"] == *path)
            .unwrap_or_else(|| panic!("{path} claimed once: {claimed:?}"));
        let id = claim["stream_id"].as_u64().unwrap();
        let body_call = api
            .on("GET", &format!("/v1/streams/{id}/body?worker=w"))
            .await;
        let received = match claim.get("body_b64") {
            Some(b64) => {
                assert!(sent.len() <= 100, "{path}: only small bodies come along");
                assert_eq!(body_call.status, 409, "an inline body is not read again");
                base64::engine::general_purpose::STANDARD
                    .decode(b64.as_str().unwrap())
                    .unwrap()
            }
            None => {
                assert!(sent.len() > 100, "{path}: a small arrived body comes along");
                assert_eq!(body_call.status, 200);
                body_call.body
            }
        };
        assert_eq!(&received, sent, "{path}");
        let answer = format!("{path}: {} bytes", received.len());
        let r = api
            .call(
                "POST",
                &format!("/v1/streams/{id}/response?worker=w"),
                &["-H", "x-ur-status: 200"],
                Some(answer.as_bytes()),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    for (path, sent, reply) in replies {
        let reply = reply.await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), format!("{path}: {} bytes", sent.len()));
    }
    // Without max the answer is one object, as before.
    let reply = client(running, "/b/5", b"five");
    let (_, json) = claim(&api, "w", "/b").await;
    assert!(json.is_object() && json.get("body_b64").is_none(), "{json}");
    let id = json["stream_id"].as_u64().unwrap();
    let r = api
        .call(
            "POST",
            &format!("/v1/streams/{id}/response?worker=w"),
            &["-H", "x-ur-status: 200"],
            Some(b"ok"),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(reply.await.unwrap().text(), "ok");
    let metrics = curl(vec![format!("http://{}/metrics", api.addr)], None).await;
    // one + two + "" inline, the 5000 bytes read, "five" never read.
    let line = "upload_response_worker_api_body_bytes_total 5006";
    assert!(
        metrics.text().lines().any(|l| l == line),
        "{line} missing from:\n{}",
        metrics.text()
    );
    server.stop().await;
}

/// `POST /v1/responses` writes several whole responses in one call, each
/// with its own outcome in order: written (204), or refused as the single
/// response call would refuse it, without harming the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_whole_responses_go_in_one_call_each_with_its_outcome() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let server = TestServer::start(|cli| cli.https = Some("none".into())).await;
    let running = &server.running;
    let api = Api {
        addr: running.worker_api.unwrap(),
        h2c: false,
    };
    let first = client(running, "/r/1", b"a");
    let second = client(running, "/r/2", b"b");
    let third = client(running, "/r/3", b"c");
    let mut ids = std::collections::HashMap::new();
    while ids.len() < 3 {
        let (id, json) = claim(&api, "w", "/r").await;
        ids.insert(json["path"].as_str().unwrap().to_owned(), id);
    }
    let (one, two, three) = (ids["/r/1"], ids["/r/2"], ids["/r/3"]);
    let calls = serde_json::json!([
        {"stream_id": one, "status": 201,
         "headers": [["content-type", "text/x-one"], ["x-ur-hidden", "1"]],
         "body_b64": b64(b"first answer")},
        {"stream_id": 77, "status": 200, "body_b64": ""},
        {"stream_id": two, "status": 200, "body_b64": "not base64!"},
        {"stream_id": three, "status": 999},
        {"stream_id": two, "status": 200, "headers": [["x-n", "2"]], "body_b64": b64(b"second")},
    ]);
    let r = api
        .call(
            "POST",
            "/v1/responses?worker=w",
            &["-H", "content-type: application/json"],
            Some(calls.to_string().as_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let outcomes: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let statuses: Vec<_> = outcomes
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["stream_id"].as_u64().unwrap(),
                o["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [(one, 204), (77, 404), (two, 400), (three, 400), (two, 204)],
        "{outcomes}"
    );
    assert!(outcomes[2]["error"].as_str().unwrap().contains("body_b64"));
    // Another worker's stream, and one already answered: 409 and 404.
    let third_again = serde_json::json!([{"stream_id": three, "status": 200}]).to_string();
    let outcome_for = |worker: &'static str| {
        let (api, body) = (&api, third_again.as_bytes());
        async move {
            let path = format!("/v1/responses?worker={worker}");
            let r = api.call("POST", &path, &[], Some(body)).await;
            let outcomes: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            outcomes[0]["status"].as_u64()
        }
    };
    assert_eq!(outcome_for("intruder").await, Some(409));
    assert_eq!(outcome_for("w").await, Some(204));
    assert_eq!(outcome_for("w").await, Some(404), "answered already");

    let first = first.await.unwrap();
    assert_eq!((first.status, first.text().as_str()), (201, "first answer"));
    assert_eq!(first.header("content-type").as_deref(), Some("text/x-one"));
    assert_eq!(first.header("x-ur-hidden"), None);
    let second = second.await.unwrap();
    assert_eq!((second.status, second.text().as_str()), (200, "second"));
    assert_eq!(second.header("x-n").as_deref(), Some("2"));
    let third = third.await.unwrap();
    assert_eq!((third.status, third.text().as_str()), (200, ""));

    // A call that is not an array, one too long, one too large: refused whole.
    for body in [
        b"{}".to_vec(),
        serde_json::to_vec(&vec![
            serde_json::json!({"stream_id": 1, "status": 200});
            65
        ])
        .unwrap(),
        vec![b' '; 9 << 20],
    ] {
        let r = api
            .call("POST", "/v1/responses?worker=w", &[], Some(&body))
            .await;
        let expected = if body.len() > 8 << 20 { 413 } else { 400 };
        assert_eq!(r.status, expected, "{}", r.text());
    }
    assert_eq!(
        api.call("POST", "/v1/responses", &[], Some(b"[]"))
            .await
            .status,
        400,
        "worker=ID is required"
    );
    server.stop().await;
}
