//! The few S3 XML documents this worker writes, and the one it reads
//! (`CompleteMultipartUpload`). Written by hand: each is a handful of
//! elements, and the one input is a flat list of parts.

use std::fmt::Write;

use crate::store::Meta;

const DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub fn error(code: &str, message: &str, resource: &str) -> String {
    format!(
        "{DECL}<Error><Code>{code}</Code><Message>{}</Message><Resource>{}</Resource></Error>\n",
        escape(message),
        escape(resource)
    )
}

pub fn initiate_upload(bucket: &str, key: &str, upload_id: &str) -> String {
    format!(
        "{DECL}<InitiateMultipartUploadResult xmlns=\"{NS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>\n",
        escape(bucket),
        escape(key)
    )
}

pub fn complete_upload(bucket: &str, key: &str, etag: &str) -> String {
    format!(
        "{DECL}<CompleteMultipartUploadResult xmlns=\"{NS}\"><Location>/{}/{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>\n",
        escape(bucket),
        escape(key),
        escape(bucket),
        escape(key),
        escape(etag)
    )
}

/// An HTTP date in ISO 8601 form, as listings carry it.
pub fn iso8601(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// One `ListObjectsV2` page.
pub struct Listing<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub max_keys: usize,
    pub objects: &'a [Meta],
    pub common_prefixes: &'a [String],
    pub next_token: Option<String>,
}

pub fn list_objects(l: &Listing<'_>) -> String {
    let mut out = format!(
        "{DECL}<ListBucketResult xmlns=\"{NS}\"><Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{}</MaxKeys><IsTruncated>{}</IsTruncated>",
        escape(l.bucket),
        escape(l.prefix),
        l.objects.len() + l.common_prefixes.len(),
        l.max_keys,
        l.next_token.is_some()
    );
    if let Some(d) = l.delimiter {
        let _ = write!(out, "<Delimiter>{}</Delimiter>", escape(d));
    }
    if let Some(token) = &l.next_token {
        let _ = write!(
            out,
            "<NextContinuationToken>{}</NextContinuationToken>",
            escape(token)
        );
    }
    for meta in l.objects {
        let _ = write!(
            out,
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            escape(&meta.key),
            iso8601(meta.modified),
            escape(&meta.etag),
            meta.size
        );
    }
    for prefix in l.common_prefixes {
        let _ = write!(
            out,
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            escape(prefix)
        );
    }
    out.push_str("</ListBucketResult>\n");
    out
}

/// The `(PartNumber, ETag)` pairs of a `CompleteMultipartUpload` body, or
/// `None` if it is not one.
pub fn parse_complete(body: &str) -> Option<Vec<(u32, String)>> {
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("<Part>") {
        let end = rest[start..].find("</Part>")? + start;
        let part = &rest[start + 6..end];
        let number = element(part, "PartNumber")?.trim().parse().ok()?;
        let etag = unescape(element(part, "ETag")?.trim());
        parts.push((number, etag));
        rest = &rest[end + 7..];
    }
    (!parts.is_empty()).then_some(parts)
}

fn element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&close)? + start;
    Some(&text[start..end])
}
