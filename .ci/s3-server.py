"""An S3 server for the shared tier's tests: moto's S3 (PyPI `moto[server]`) with its
authentication on, so every request must carry a SigV4 signature made with the one
access key this script creates (a wrong secret gets 403 SignatureDoesNotMatch).

    python s3-server.py HOST PORT BUCKET ACCESS_KEY SECRET_KEY

Started by `.ci/servers` from its own virtualenv; runs until killed. Objects live in
moto's memory (large ones in spooled temporary files).

One normalisation in front of moto: the query string is re-encoded the way SigV4's
canonical request encodes it (RFC 3986, `/` as `%2F`). moto builds its canonical request
from the query exactly as it arrived, which only matches clients that already send it
encoded that way (botocore); OpenDAL sends `prefix=a/b/` with plain slashes, as AWS
accepts, and every listing would be refused. The signature is still checked, over the
canonical form AWS itself uses.
"""

import json
import os
import sys
from urllib.parse import quote, unquote

# Read by moto's settings at import: 0 = every request is authenticated, none is let
# through unsigned.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"

from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.iam.models import iam_backends  # noqa: E402
from moto.s3.models import s3_backends  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    create_backend_app,
)
from moto.moto_server.threaded_moto_server import MotoRequestHandler  # noqa: E402


def canonical_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        if "=" in pair:
            key, value = pair.split("=", 1)
            pair = f"{quote(unquote(key), safe='-_.~')}={quote(unquote(value), safe='-_.~')}"
        pairs.append(pair)
    return "&".join(pairs)


class CanonicalQuery:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        query = environ.get("QUERY_STRING", "")
        if query:
            environ["QUERY_STRING"] = canonical_query(query)
        return self.app(environ, start_response)


def main() -> None:
    host, port, bucket, access_key, secret_key = sys.argv[1:6]
    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    iam.create_user(region_name="us-east-1", user_name="trove-ci")
    key = iam.create_access_key("trove-ci")
    # moto draws the key at random; the tests use fixed ones.
    del iam.access_keys[key.physical_resource_id]
    key.access_key_id = access_key
    key.secret_access_key = secret_key
    iam.access_keys[key.physical_resource_id] = key
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy("trove-ci", "s3-all", json.dumps(policy))
    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].create_bucket(bucket, "us-east-1")
    app = CanonicalQuery(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, int(port), app, threaded=True, request_handler=MotoRequestHandler)
    print(f"moto s3 on {host}:{port}, bucket {bucket}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
