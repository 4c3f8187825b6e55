"""Model repositories in object storage: `s3://` locations (`location.py`), the S3 client and transfers (`s3.py`),
and a conversion that writes into a remote repository (`publish.py`)."""
