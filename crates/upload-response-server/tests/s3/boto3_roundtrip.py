"""boto3 against the ingress and its s3_storage worker (run by s3_clients.rs).

Usage: boto3_roundtrip.py ENDPOINT_URL BUCKET SIZE
Credentials, region and AWS_CA_BUNDLE come from the environment. Prints one
JSON line: what the client sent (headers of the PutObject request) and what
came back, so that the Rust test checks the premise (an aws-chunked body with
a trailing checksum) as well as the bytes.
"""
import hashlib
import json
import os
import sys

import boto3
from botocore.config import Config

endpoint, bucket, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
sent = {}


def record(request, **_):
    for k, v in request.headers.items():
        sent[k.lower()] = v.decode() if isinstance(v, bytes) else str(v)


s3.meta.events.register("before-send.s3.PutObject", record)

body = os.urandom(size)
s3.create_bucket(Bucket=bucket)
put = s3.put_object(Bucket=bucket, Key="dir/hello object.bin", Body=body, ContentType="application/x-test")
got = s3.get_object(Bucket=bucket, Key="dir/hello object.bin")
data = got["Body"].read()
head = s3.head_object(Bucket=bucket, Key="dir/hello object.bin")
ranged = s3.get_object(Bucket=bucket, Key="dir/hello object.bin", Range="bytes=10-19")["Body"].read()
listing = s3.list_objects_v2(Bucket=bucket, Prefix="dir/")
s3.delete_object(Bucket=bucket, Key="dir/hello object.bin")
after = s3.list_objects_v2(Bucket=bucket)
print(json.dumps({
    "content_encoding": sent.get("content-encoding"),
    "content_sha256": sent.get("x-amz-content-sha256"),
    "trailer": sent.get("x-amz-trailer"),
    "sent_sha256": hashlib.sha256(body).hexdigest(),
    "got_sha256": hashlib.sha256(data).hexdigest(),
    "put_etag": put["ETag"],
    "md5": hashlib.md5(body).hexdigest(),
    "head_length": head["ContentLength"],
    "head_type": head["ContentType"],
    "range_ok": ranged == body[10:20],
    "listed": [o["Key"] for o in listing.get("Contents", [])],
    "after_delete": after.get("KeyCount"),
}))
