//! Table tests of the policy, one row per rule, each naming the section it
//! checks (in the manner of hyper's `t!` tables). Time is injected: `T0` is when
//! the entry was stored, rows give `now` relative to it.

use http::header::{HeaderMap, HeaderName};
use http::{Method, StatusCode};

use super::*;
use crate::config::Mode;
use crate::meta::ObjectMeta;

const T0: u64 = 1_800_000_000;
const SETTINGS: Settings = Settings {
    mode: Mode::Normal,
    heuristic_cap: 3600,
    store_set_cookie: false,
};

fn map(fields: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in fields {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    map
}

/// A GET of a 1000-byte object answered at `T0` with `fields` (`None`: not
/// storable), as the proxy stores it.
fn stored(fields: &[(&str, &str)]) -> Option<ObjectMeta> {
    let headers = map(fields);
    let storage = storable(SETTINGS, &Directives::default(), 200, &headers, true, T0)?;
    Some(ObjectMeta {
        key: "/o".into(),
        status: 200,
        headers: crate::meta::stored_headers(&headers, &storage.strip),
        total: Some(1000),
        slice_size: 4096,
        fresh_until: storage.fresh_until,
        cacheable: true,
        stored_at: T0,
        vary: Vec::new(),
        parsed: Default::default(),
    })
}

fn whole() -> Action {
    Action::Serve(Reply::Bytes {
        start: 0,
        end: 1000,
        partial: false,
    })
}

/// `t!(name, "section", method, request fields, entry fields, seconds after T0
/// => action, x-cache)`; entry fields `None` means nothing stored.
macro_rules! t {
    ($name:ident, $section:literal, $method:ident, [$($req:expr),*], $entry:expr, $after:expr
        => $action:expr, $status:ident) => {
        #[test]
        fn $name() {
            let req = Req::new(&Method::$method, &map(&[$($req),*]));
            let entry: Option<&[(&str, &str)]> = $entry;
            let entry = entry.map(|f| stored(f).expect("storable"));
            let got = decide(&req, entry.as_ref(), T0 + $after, Mode::Normal);
            assert_eq!(
                got,
                Decision { action: $action, status: CacheStatus::$status },
                "{}",
                $section
            );
        }
    };
}

const MAX60: &[(&str, &str)] = &[("cache-control", "max-age=60"), ("etag", "\"a\"")];

t!(fresh_entry_is_served, "RFC 9111 §4.2", GET, [], Some(MAX60), 59 => whole(), Hit);
t!(stale_entry_is_revalidated, "RFC 9111 §4.2, §4.3.1", GET, [], Some(MAX60), 60
    => Action::Revalidate, Revalidated);
t!(origin_age_counts_against_freshness, "RFC 9111 §4.2.3", GET, [],
    Some(&[("cache-control", "max-age=60"), ("age", "50"), ("etag", "\"a\"")]), 10
    => Action::Revalidate, Revalidated);
t!(heuristic_freshness_from_last_modified, "RFC 9111 §4.2.2", GET, [],
    Some(&[("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT")]), 3599 => whole(), Hit);
t!(heuristic_freshness_is_capped, "RFC 9111 §4.2.2", GET, [],
    Some(&[("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT")]), 3600
    => Action::Revalidate, Revalidated);
t!(no_heuristic_without_last_modified, "RFC 9111 §4.2.2", GET, [],
    Some(&[("etag", "\"a\"")]), 0 => Action::Revalidate, Revalidated);
t!(expires_minus_date, "RFC 9111 §5.3", GET, [],
    Some(&[("date", "Fri, 15 Jan 2027 08:00:00 GMT"), ("expires", "Fri, 15 Jan 2027 08:01:00 GMT"),
        ("etag", "\"a\"")]), 59 => whole(), Hit);
t!(authorization_is_passed_through, "RFC 9111 §3.5", GET, [("authorization", "Bearer x")],
    Some(MAX60), 0 => Action::PassThrough, Bypass);
t!(cookie_is_passed_through, "RFC 9111 §3.5 (Varnish rule)", GET, [("cookie", "s=1")],
    Some(MAX60), 0 => Action::PassThrough, Bypass);
t!(unsafe_method_passes_through, "RFC 9111 §4.4", POST, [], Some(MAX60), 0
    => Action::PassThrough, Bypass);
t!(request_no_cache_revalidates, "RFC 9111 §5.2.1.4", GET, [("cache-control", "no-cache")],
    Some(MAX60), 0 => Action::Revalidate, Revalidated);
t!(pragma_no_cache_revalidates, "RFC 9111 §5.4", GET, [("pragma", "no-cache")],
    Some(MAX60), 0 => Action::Revalidate, Revalidated);
t!(request_no_store_is_not_stored, "RFC 9111 §5.2.1.5", GET, [("cache-control", "no-store")],
    None, 0 => Action::PassThrough, Bypass);
t!(request_max_age_limits_age, "RFC 9111 §5.2.1.1", GET, [("cache-control", "max-age=10")],
    Some(MAX60), 20 => Action::Revalidate, Revalidated);
t!(request_min_fresh, "RFC 9111 §5.2.1.3", GET, [("cache-control", "min-fresh=30")],
    Some(MAX60), 40 => Action::Revalidate, Revalidated);
t!(request_max_stale_accepts_stale, "RFC 9111 §5.2.1.2", GET, [("cache-control", "max-stale=30")],
    Some(MAX60), 80 => whole(), Stale);
t!(request_max_stale_beyond_its_bound, "RFC 9111 §5.2.1.2", GET, [("cache-control", "max-stale=10")],
    Some(MAX60), 80 => Action::Revalidate, Revalidated);
t!(max_stale_yields_to_must_revalidate, "RFC 9111 §5.2.2.2", GET, [("cache-control", "max-stale")],
    Some(&[("cache-control", "max-age=60, must-revalidate"), ("etag", "\"a\"")]), 80
    => Action::Revalidate, Revalidated);
t!(max_stale_yields_to_proxy_revalidate, "RFC 9111 §5.2.2.8", GET, [("cache-control", "max-stale")],
    Some(&[("cache-control", "max-age=60, proxy-revalidate"), ("etag", "\"a\"")]), 80
    => Action::Revalidate, Revalidated);
t!(s_maxage_overrides_max_age, "RFC 9111 §5.2.2.10", GET, [],
    Some(&[("cache-control", "max-age=5, s-maxage=60"), ("etag", "\"a\"")]), 30 => whole(), Hit);
t!(only_if_cached_without_entry, "RFC 9111 §5.2.1.7", GET, [("cache-control", "only-if-cached")],
    None, 0 => Action::Refuse(StatusCode::GATEWAY_TIMEOUT), Miss);
t!(only_if_cached_with_stale_entry, "RFC 9111 §5.2.1.7", GET, [("cache-control", "only-if-cached")],
    Some(MAX60), 61 => Action::Refuse(StatusCode::GATEWAY_TIMEOUT), Miss);
t!(response_no_cache_revalidates_fresh_entry, "RFC 9111 §5.2.2.4", GET, [],
    Some(&[("cache-control", "max-age=60, no-cache"), ("etag", "\"a\"")]), 1
    => Action::Revalidate, Revalidated);
t!(head_is_served_from_stored_get, "RFC 9110 §9.3.2, RFC 9111 §4", HEAD, [], Some(MAX60), 0
    => whole(), Hit);
t!(if_none_match_weak_comparison, "RFC 9110 §13.1.2", GET, [("if-none-match", "W/\"a\"")],
    Some(MAX60), 0 => Action::Serve(Reply::NotModified), Hit);
t!(if_none_match_star_matches_entry_without_etag, "RFC 9110 §13.1.2", GET,
    [("if-none-match", "*")], Some(&[("cache-control", "max-age=60"),
        ("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT")]), 0
    => Action::Serve(Reply::NotModified), Hit);
t!(if_modified_since_not_modified, "RFC 9110 §13.1.3", GET,
    [("if-modified-since", "Fri, 02 Jan 2026 00:00:00 GMT")],
    Some(&[("cache-control", "max-age=60"), ("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT")]), 0
    => Action::Serve(Reply::NotModified), Hit);
t!(if_match_mismatch_is_412, "RFC 9110 §13.1.1", GET, [("if-match", "\"b\"")], Some(MAX60), 0
    => Action::Serve(Reply::PreconditionFailed), Hit);
t!(range_beyond_the_end_is_416, "RFC 9110 §14.1.2, §15.5.17", GET, [("range", "bytes=2000-")],
    Some(MAX60), 0 => Action::Serve(Reply::Unsatisfiable), Hit);
t!(range_is_served_from_the_entry, "RFC 9110 §14.2", GET, [("range", "bytes=10-19")],
    Some(MAX60), 0 => Action::Serve(Reply::Bytes { start: 10, end: 20, partial: true }), Hit);
t!(stale_while_revalidate_serves_at_once, "RFC 5861 §3", GET, [],
    Some(&[("cache-control", "max-age=60, stale-while-revalidate=30"), ("etag", "\"a\"")]), 80
    => Action::ServeThenRevalidate(Reply::Bytes { start: 0, end: 1000, partial: false }), Stale);
t!(stale_while_revalidate_window_over, "RFC 5861 §3", GET, [],
    Some(&[("cache-control", "max-age=60, stale-while-revalidate=30"), ("etag", "\"a\"")]), 90
    => Action::Revalidate, Revalidated);
t!(stale_without_validators_is_refetched, "RFC 9111 §4.3.1", GET, [],
    Some(&[("cache-control", "max-age=60")]), 61 => Action::Fetch, Miss);
t!(miss_is_fetched, "RFC 9111 §4", GET, [], None, 0 => Action::Fetch, Miss);
t!(identity_refused_is_passed_through, "RFC 9110 §12.5.3", GET,
    [("accept-encoding", "gzip, identity;q=0")], Some(MAX60), 0 => Action::PassThrough, Bypass);

#[test]
fn replay_mode_serves_stored_and_refuses_misses() {
    // ARCHITECTURE.md §9 modes: no origin contact at all.
    let req = Req::new(&Method::GET, &HeaderMap::new());
    let entry = stored(MAX60).unwrap();
    let got = decide(&req, Some(&entry), T0 + 1_000_000, Mode::Replay);
    assert_eq!(got.action, whole());
    let got = decide(&req, None, T0, Mode::Replay);
    assert_eq!(got.action, Action::Refuse(StatusCode::GATEWAY_TIMEOUT));
}

/// `r!(name, "section", entry fields, seconds after T0, outcome => action, x-cache)`.
macro_rules! r {
    ($name:ident, $section:literal, $entry:expr, $after:expr, $outcome:expr
        => $action:expr, $status:ident) => {
        #[test]
        fn $name() {
            let req = Req::new(&Method::GET, &HeaderMap::new());
            let entry = stored($entry).unwrap();
            let got = after_revalidation(&req, &entry, $outcome, T0 + $after);
            assert_eq!(
                got,
                Decision {
                    action: $action,
                    status: CacheStatus::$status
                },
                "{}",
                $section
            );
        }
    };
}

r!(confirmed_entry_is_served, "RFC 9111 §4.3.3-4", MAX60, 61, Outcome::Confirmed
    => whole(), Revalidated);
r!(changed_entry_is_fetched, "RFC 9111 §4.3.3", MAX60, 61, Outcome::Changed
    => Action::Fetch, Miss);
r!(failed_without_permission_is_the_error, "RFC 9111 §4.2.4", MAX60, 61,
    Outcome::Failed(StatusCode::BAD_GATEWAY) => Action::Refuse(StatusCode::BAD_GATEWAY), Miss);
r!(stale_if_error_serves_stale, "RFC 5861 §4",
    &[("cache-control", "max-age=60, stale-if-error=60"), ("etag", "\"a\"")], 100,
    Outcome::Failed(StatusCode::BAD_GATEWAY) => whole(), Stale);
r!(stale_if_error_window_over, "RFC 5861 §4",
    &[("cache-control", "max-age=60, stale-if-error=60"), ("etag", "\"a\"")], 120,
    Outcome::Failed(StatusCode::BAD_GATEWAY) => Action::Refuse(StatusCode::BAD_GATEWAY), Miss);
r!(must_revalidate_failure_is_504, "RFC 9111 §5.2.2.2",
    &[("cache-control", "max-age=60, must-revalidate, stale-if-error=60"), ("etag", "\"a\"")], 61,
    Outcome::Failed(StatusCode::BAD_GATEWAY) => Action::Refuse(StatusCode::GATEWAY_TIMEOUT), Miss);

/// `s!(name, "section", status, answer fields => stored?, stripped fields)`.
macro_rules! s {
    ($name:ident, $section:literal, $settings:expr, $status:literal, [$($f:expr),*]
        => $stored:literal, [$($strip:literal),*]) => {
        #[test]
        fn $name() {
            let got = storable($settings, &Directives::default(), $status, &map(&[$($f),*]), true, T0);
            assert_eq!(got.is_some(), $stored, "{}", $section);
            if let Some(got) = got {
                let strip: Vec<&str> = got.strip.iter().map(HeaderName::as_str).collect();
                let want: &[&str] = &[$($strip),*];
                assert_eq!(strip, want, "{}", $section);
            }
        }
    };
}

s!(plain_200_with_max_age_is_stored, "RFC 9111 §3", SETTINGS, 200, [("cache-control", "max-age=1")]
    => true, []);
s!(error_status_is_not_stored, "RFC 9111 §3", SETTINGS, 404, [("cache-control", "max-age=1")]
    => false, []);
s!(no_store_is_not_stored, "RFC 9111 §5.2.2.5", SETTINGS, 200, [("cache-control", "public, no-store")]
    => false, []);
s!(private_is_not_stored, "RFC 9111 §5.2.2.7", SETTINGS, 200, [("cache-control", "private, max-age=9")]
    => false, []);
s!(private_fields_are_stripped, "RFC 9111 §5.2.2.7", SETTINGS, 200,
    [("cache-control", "max-age=9, private=\"x-user, x-team\"")] => true, ["x-user", "x-team"]);
s!(no_cache_fields_are_stripped, "RFC 9111 §5.2.2.4", SETTINGS, 200,
    [("cache-control", "no-cache=\"x-user\", max-age=9")] => true, ["x-user"]);
s!(vary_star_is_not_stored, "RFC 9111 §4.1", SETTINGS, 200,
    [("cache-control", "max-age=9"), ("vary", "accept-language, *")] => false, []);
s!(set_cookie_is_not_stored, "RFC 9111 §7.3 (privacy)", SETTINGS, 200,
    [("cache-control", "max-age=9"), ("set-cookie", "s=1")] => false, []);
s!(set_cookie_stored_stripped_when_allowed, "RFC 9111 §7.3 (privacy)",
    Settings { store_set_cookie: true, ..SETTINGS }, 200,
    [("cache-control", "max-age=9"), ("set-cookie", "s=1")] => true, ["set-cookie"]);
s!(no_lifetime_no_validator_is_not_stored, "RFC 9111 §4.2.2", SETTINGS, 200,
    [("content-type", "text/plain")] => false, []);
s!(record_mode_stores_everything, "ARCHITECTURE.md §9 modes",
    Settings { mode: Mode::Record, ..SETTINGS }, 200, [("cache-control", "no-store")] => true, []);

#[test]
fn unsafe_methods_invalidate_unless_they_failed() {
    // RFC 9111 §4.4
    assert!(invalidates(&Method::POST, StatusCode::CREATED));
    assert!(invalidates(&Method::DELETE, StatusCode::NO_CONTENT));
    assert!(invalidates(&Method::PUT, StatusCode::SEE_OTHER));
    assert!(!invalidates(
        &Method::PUT,
        StatusCode::INTERNAL_SERVER_ERROR
    ));
    assert!(!invalidates(&Method::GET, StatusCode::OK));
}

#[test]
fn variants_are_keyed_by_their_selecting_fields() {
    // RFC 9111 §4.1: the selecting fields' values, all lines combined.
    let answer = map(&[
        ("vary", "Accept-Language"),
        ("vary", "x-tenant, accept-language"),
    ]);
    let Vary::Fields(fields) = vary(&answer) else {
        panic!("varies")
    };
    assert_eq!(fields, ["accept-language", "x-tenant"]);
    let fr = selecting(
        &fields,
        &map(&[("accept-language", "fr"), ("x-tenant", "a")]),
    );
    let de = selecting(
        &fields,
        &map(&[("accept-language", "de"), ("x-tenant", "a")]),
    );
    let split = selecting(&fields, &map(&[("Accept-Language", "fr,de")]));
    let split2 = selecting(
        &fields,
        &map(&[("accept-language", "fr"), ("accept-language", " de")]),
    );
    assert_ne!(variant_key("/p", &fr), variant_key("/p", &de));
    assert_eq!(
        split, split2,
        "lines combine like one comma-separated value"
    );
    assert_eq!(variant_key("/p", &[]), "/p");
    assert_eq!(vary(&map(&[("vary", "*")])), Vary::Star);
    assert_eq!(vary(&HeaderMap::new()), Vary::None);
}
