"""Tests. The environment they share is set here, before any test module (or the
service, whose settings are read once) is imported."""

import json
import os

# Fixed keys and webhook secrets for the test run, set before settings are first read.
TEST_SECRETS = {
    "shopify": ["shpss_test_secret_new", "shpss_test_secret"],
    "woocommerce": ["wc_test_secret"],
    "stripe": ["whsec_test_secret"],
    "bigcommerce": ["test_client_secret"],
    "backoffice": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
}
os.environ.setdefault("IDENTITY_HASH_KEY", "test-identity-hash-key")
os.environ.setdefault("PII_ENCRYPTION_KEYS", "rQ5G9zP4m1YyZ7f3c2kq0bq6rX9d8JzF0pTj1uVwXy4=")
os.environ.setdefault("WEBHOOK_SECRETS", json.dumps(TEST_SECRETS))
