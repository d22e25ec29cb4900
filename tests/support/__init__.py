"""What the tests share: the repository's root, the S3 endpoint (:mod:`~tests.support.s3_endpoint`), the change
archive's set-up and replays (:mod:`~tests.support.pitr`)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
