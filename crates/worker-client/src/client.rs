//! The HTTP side: one pooled hyper client, the claim long-poll, and the
//! claim loops that serve every origin.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::job::{ClaimedWire, RemoteJob, empty};
use crate::responder::Responder;
use crate::{BoxError, ClientError, Origins, WorkerConfig};

pub(crate) type ReqBody = BoxBody<Bytes, BoxError>;

/// The pooled connection client and the credentials: what a call needs.
#[derive(Clone)]
pub(crate) struct Caller {
    http: Client<HttpConnector, ReqBody>,
    auth: HeaderValue,
}

/// What every job shares: the caller, the configuration, and the response
/// queue of each ingress.
pub(crate) struct Shared {
    pub(crate) caller: Caller,
    pub(crate) config: WorkerConfig,
    responders: std::sync::Mutex<HashMap<String, Arc<Responder>>>,
}

impl Shared {
    /// The response queue of `origin` (started on first use).
    pub(crate) fn responder(&self, origin: &str) -> Arc<Responder> {
        let mut all = self.responders.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(origin.to_owned())
            .or_insert_with(|| {
                Arc::new(Responder::start(
                    self.caller.clone(),
                    origin.to_owned(),
                    self.worker_query(),
                ))
            })
            .clone()
    }
}

impl Caller {
    /// Makes one call with the bearer token.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: String,
        headers: http::HeaderMap,
        body: ReqBody,
    ) -> Result<Response<Incoming>, ClientError> {
        let call = format!("{method} {url}");
        let mut request = Request::builder()
            .method(method)
            .uri(url.as_str())
            .body(body)
            .map_err(|e| ClientError::Origin {
                origin: url.clone(),
                reason: e.to_string(),
            })?;
        *request.headers_mut() = headers;
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, self.auth.clone());
        self.http
            .request(request)
            .await
            .map_err(|source| ClientError::Http { call, source })
    }
}

impl Shared {
    /// `response` if its status is `expected`, else the server's refusal.
    pub(crate) async fn expect(
        call: &str,
        response: Response<Incoming>,
        expected: &[StatusCode],
    ) -> Result<Response<Incoming>, ClientError> {
        if expected.contains(&response.status()) {
            return Ok(response);
        }
        let status = response.status();
        let text = match response.into_body().collect().await {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_owned(),
            Err(e) => format!("(no explanation: {e})"),
        };
        Err(ClientError::Status {
            call: call.to_owned(),
            status,
            message: text,
        })
    }

    /// `?worker=ID` for the stream calls.
    pub(crate) fn worker_query(&self) -> String {
        format!("worker={}", encode(&self.config.worker_id))
    }
}

/// Percent-encodes a query parameter value.
pub(crate) fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// A remote worker: claims requests from the ingress nodes and hands them
/// to a handler. Cheap to clone.
#[derive(Clone)]
pub struct WorkerClient {
    shared: Arc<Shared>,
}

impl WorkerClient {
    /// A client for `config` (no connection is made yet). Fails only if the
    /// token cannot be an HTTP header value.
    pub fn new(config: WorkerConfig) -> Result<Self, ClientError> {
        let mut builder = Client::builder(TokioExecutor::new());
        builder.http2_only(config.http2);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let auth = HeaderValue::from_str(&format!("Bearer {}", config.token))
            .map_err(|_| ClientError::InvalidToken)?;
        Ok(Self {
            shared: Arc::new(Shared {
                caller: Caller {
                    http: builder.build(connector),
                    auth,
                },
                config,
                responders: std::sync::Mutex::default(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.shared.config
    }

    /// One long-poll on `origin` (`http://host:port`): the next request
    /// under the worker's prefix, or `None` if none came within
    /// [`WorkerConfig::wait`]. The worker owns its response and reads its
    /// body until the job is answered, released or dropped.
    pub async fn claim(&self, origin: &str) -> Result<Option<RemoteJob>, ClientError> {
        Ok(self.claim_call(origin, None).await?.pop())
    }

    /// One long-poll on `origin` for up to `max` requests (at least one):
    /// the first that comes within [`WorkerConfig::wait`] and those already
    /// queued behind it, claimed in one call. Empty if none came.
    pub async fn claim_batch(
        &self,
        origin: &str,
        max: usize,
    ) -> Result<Vec<RemoteJob>, ClientError> {
        self.claim_call(origin, Some(max.max(1))).await
    }

    /// `POST /v1/claim`: with `max`, a batch (a JSON array); without, one
    /// claim (an object). An ingress that predates batches answers an
    /// object either way, which reads as a batch of one.
    async fn claim_call(
        &self,
        origin: &str,
        max: Option<usize>,
    ) -> Result<Vec<RemoteJob>, ClientError> {
        let config = &self.shared.config;
        let mut url = format!(
            "{origin}/v1/claim?{}&prefix={}&wait_ms={}",
            self.shared.worker_query(),
            encode(&config.prefix),
            config.wait.as_millis()
        );
        if let Some(max) = max {
            url.push_str(&format!("&max={max}"));
        }
        if config.inline_max > 0 {
            url.push_str(&format!("&inline_max={}", config.inline_max));
        }
        let call = format!("POST {url}");
        let response = self
            .shared
            .caller
            .call(Method::POST, url, http::HeaderMap::new(), empty())
            .await?;
        let response =
            Shared::expect(&call, response, &[StatusCode::OK, StatusCode::NO_CONTENT]).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(ClientError::Body)?
            .to_bytes();
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Answer {
            Batch(Vec<ClaimedWire>),
            One(Box<ClaimedWire>),
        }
        let claimed = match serde_json::from_slice(&body)? {
            Answer::Batch(all) => all,
            Answer::One(one) => vec![*one],
        };
        // Decode every body first: a bad one refuses the whole answer
        // (its jobs are released as they drop), never half of it.
        let mut jobs = Vec::with_capacity(claimed.len());
        let mut bad = None;
        for ClaimedWire { claimed, body_b64 } in claimed {
            let inline = match body_b64.map(|b| BASE64.decode(b)) {
                None => None,
                Some(Ok(bytes)) => Some(Bytes::from(bytes)),
                Some(Err(e)) => {
                    bad = Some(e);
                    None
                }
            };
            jobs.push(RemoteJob::new(
                self.shared.clone(),
                origin.to_owned(),
                claimed,
                inline,
            ));
        }
        match bad {
            Some(e) => Err(ClientError::InlineBody(e)),
            None => Ok(jobs),
        }
    }

    /// Serves every origin until `shutdown` is cancelled: at most
    /// [`WorkerConfig::concurrency`] claims and jobs at a time over all
    /// origins, each job in its own task; failed calls are retried with
    /// exponential backoff. On shutdown it stops claiming and returns once
    /// every job in flight has finished.
    pub async fn run<H, F>(&self, shutdown: CancellationToken, handler: H)
    where
        H: Fn(RemoteJob) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<(), ClientError>> + Send + 'static,
    {
        let permits = Arc::new(Semaphore::new(self.config().concurrency.max(1)));
        let jobs = TaskTracker::new();
        let loops = TaskTracker::new();
        let mut serving: HashMap<String, CancellationToken> = HashMap::new();
        loop {
            match self.config().origins.resolve().await {
                Ok(origins) => {
                    // Origins that vanished from DNS: stop claiming there.
                    serving.retain(|origin, stop| {
                        let keep = origins.contains(origin);
                        if !keep {
                            stop.cancel();
                        }
                        keep
                    });
                    for origin in origins {
                        if serving.contains_key(&origin) {
                            continue;
                        }
                        let stop = shutdown.child_token();
                        serving.insert(origin.clone(), stop.clone());
                        let this = self.clone();
                        let (permits, jobs, handler) =
                            (permits.clone(), jobs.clone(), handler.clone());
                        loops.spawn(async move {
                            this.claim_loop(origin, stop, permits, jobs, handler).await;
                        });
                    }
                }
                // Keep serving the origins we know; try again at the next refresh.
                Err(e) => tracing::warn!(error = %e, "cannot resolve the ingress origins"),
            }
            let refresh = match &self.config().origins {
                Origins::List(_) => None,
                Origins::Dns { refresh, .. } => Some(*refresh),
            };
            match refresh {
                Some(every) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(every) => {}
                    }
                }
                None => {
                    shutdown.cancelled().await;
                    break;
                }
            }
        }
        loops.close();
        loops.wait().await;
        jobs.close();
        jobs.wait().await;
    }

    /// Claims from one origin until `stop`.
    async fn claim_loop<H, F>(
        &self,
        origin: String,
        stop: CancellationToken,
        permits: Arc<Semaphore>,
        jobs: TaskTracker,
        handler: H,
    ) where
        H: Fn(RemoteJob) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Result<(), ClientError>> + Send + 'static,
    {
        let config = self.config();
        let mut delay = config.backoff_min;
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            // One claim call takes as many requests as there are free
            // permits (up to the batch size): one call per batch rather
            // than one per job, while the concurrency bound still holds.
            let mut held = vec![first];
            while held.len() < config.batch.max(1) {
                match permits.clone().try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => break,
                }
            }
            // Abandoning a long-poll on shutdown is safe: a claim whose
            // answer is not delivered is given back by the server.
            let claimed = tokio::select! {
                _ = stop.cancelled() => return,
                claimed = self.claim_batch(&origin, held.len()) => claimed,
            };
            match claimed {
                Ok(claimed) => {
                    delay = config.backoff_min;
                    // Permits beyond the jobs that came drop here.
                    for (job, permit) in claimed.into_iter().zip(held) {
                        let handler = handler.clone();
                        jobs.spawn(async move {
                            let id = job.stream_id();
                            if let Err(e) = handler(job).await {
                                tracing::debug!(stream = id, error = %e, "job failed");
                            }
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    drop(held);
                    tracing::warn!(origin, error = %e, retry_in = ?delay, "claim failed");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(config.backoff_max);
                }
            }
        }
    }
}
