"""fstore: the Python SDK of the fstore feature store.

    >>> from fstore import FeatureStore
    >>> fs = FeatureStore("http://localhost:8002")
    >>> fs.create_feature_set(name="user_profile", entities=["user"], owner="data-team")
    >>> fs.get_online_features(["user_profile:user_age"], {"user": ["user_123"]}).to_df()

Errors raise :class:`FeatureStoreError` subclasses (``status``, ``code``,
``message``, ``field``). ``fstore-py apply FILE`` (or ``python -m fstore
apply FILE``) applies definitions-as-code.
"""

__version__ = "0.1.0"

from .client import FeatureStore, find_time_column  # noqa: E402
from .errors import (  # noqa: E402
    ERRORS_BY_STATUS,
    AuthenticationError,
    BadRequestError,
    BatchJobError,
    ConflictError,
    FeatureStoreConnectionError,
    FeatureStoreError,
    FeatureStoreTimeoutError,
    InternalServerError,
    MaterializationError,
    MethodNotAllowedError,
    NotFoundError,
    NotImplementedByServerError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnavailableError,
    UnprocessableError,
    UnsupportedMediaTypeError,
)
from .models import BatchJob, Job, MaterializationJob, Metrics, OnlineFeatures  # noqa: E402

__all__ = [
    "__version__",
    "FeatureStore",
    "find_time_column",
    "Job",
    "MaterializationJob",
    "BatchJob",
    "OnlineFeatures",
    "Metrics",
    "ERRORS_BY_STATUS",
    "FeatureStoreError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "MethodNotAllowedError",
    "ConflictError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "UnprocessableError",
    "InternalServerError",
    "NotImplementedByServerError",
    "UnavailableError",
    "FeatureStoreConnectionError",
    "FeatureStoreTimeoutError",
    "MaterializationError",
    "BatchJobError",
]
