"""pyexec_client: a small, standard-library-only Python client for the
pyexec service (run untrusted Python in sandboxes, sessions, files,
streamed output).

    from pyexec_client import Client

    client = Client("http://localhost:8000", api_key=None)
    result = client.execute("print('你好')")
    print(result.stdout)
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    BadRequest,
    ConnectionFailed,
    NotFound,
    PyexecError,
    RateLimited,
    ServerError,
    Unauthorized,
)
from .models import Chart, DataFrame, Event, ExecError, OutputFile, Result, Validation  # noqa: E402
from .client import DEFAULT_TIMEOUT, Client, Session, Stream  # noqa: E402

__all__ = [
    "Client", "Session", "Stream", "DEFAULT_TIMEOUT",
    "Result", "Chart", "DataFrame", "OutputFile", "ExecError", "Validation", "Event",
    "PyexecError", "BadRequest", "Unauthorized", "NotFound", "RateLimited", "ServerError",
    "ConnectionFailed",
]
