"""Settings: one object, read from TRAINBOARD_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINBOARD_", env_file=None, extra="ignore")

    # Where SQLite files, data sets, uploads and artifacts live.
    data_dir: Path = Path("./data")
    # Empty means SQLite at <data_dir>/trainboard.db; set a postgresql+psycopg:// URL to scale out.
    database_url: str = ""
    # The interface to listen on: loopback unless told otherwise (beyond it, the server starts only
    # once it has an account, or with --insecure-no-auth).
    host: str = "127.0.0.1"
    # The port to listen on.
    port: int = 8000

    # Caps that reject oversized models before anything is allocated.
    max_params: int = Field(default=200_000_000, ge=1)
    # Activation memory of one sample through the model, in bytes (checked before anything runs).
    max_activation_bytes: int = Field(default=1 << 30, ge=1)
    # Caps on what one run may ask for: the most epochs.
    max_epochs: int = Field(default=1000, ge=1)
    # The largest batch size one run may ask for.
    max_batch_size: int = Field(default=65536, ge=1)
    # Layers in one architecture: validation and the trainer's memory grow with the count.
    max_layers: int = Field(default=1000, ge=1)
    # Request bodies (JSON and forms) over this size are refused with 413 while they are read
    # (app/core/limits.py); the data set upload routes have max_upload_bytes instead. 512 KiB holds
    # a 1000-layer architecture (~100 KiB) several times over, and the JSON parse, which runs on the
    # event loop, stays around 10 ms.
    max_body_bytes: int = Field(default=512 * 1024, ge=1)

    # Executor: "local" (a process per run on this machine) or "ray" (an actor per run on a Ray
    # cluster; needs the ray extra).
    executor: str = "local"
    # Where the Ray executor finds the cluster: "auto" (a cluster this machine belongs to), a head's
    # "HOST:6379" from a node of the cluster, or "ray://HOST:10001" (Ray Client) from elsewhere.
    ray_address: str = "auto"
    # How many runs train at once with the local executor (the Ray executor reads the cluster's size).
    slots: int = Field(default=2, ge=1)
    # torch threads per trainer; 0 splits the machine's cores (less one) between the slots (local)
    # or gives each run 1 CPU (Ray: a run's actor asks for this many CPUs).
    trainer_threads: int = Field(default=0, ge=0)
    # Keep a trainer process warm (torch already imported) so runs start in well under a second.
    warm_workers: bool = True
    # A starting/running run of another owner whose heartbeat is older than this is interrupted.
    heartbeat_timeout_s: float = 10.0
    # A trainer of ours that is alive but silent this long has hung (e.g. a deadlock, or stopped
    # with SIGSTOP): its run fails and the process group is killed. Long, so slow data loads pass.
    hung_timeout_s: float = Field(default=120.0, gt=0)
    # A run handed to a trainer that has not reported within this many seconds fails (the trainer
    # could not start: bad interpreter, import error, crash before its first report).
    start_timeout_s: float = Field(default=60.0, gt=0)
    # After a cancel, a trainer that has not stopped in this many seconds is killed.
    cancel_grace_s: float = 3.0
    # SSE: how often the shared per-run poller reads new rows.
    poll_interval_s: float = 0.1
    # SSE: a comment line is sent this often on a quiet stream, so proxies keep it open.
    sse_heartbeat_s: float = 15.0

    # Decoded pixels in one uploaded zip of images, all images summed: checked from the image
    # headers before anything is decoded (twenty 4096x4096 PNGs are a 1 MB zip but 335 M pixels).
    max_upload_pixels: int = Field(default=100_000_000, ge=1)
    # Bytes of one data set upload (413 when over; the body-size middleware uses it too).
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    # Seconds one prediction may take in the predictor process before it is killed (503) and
    # started again on the next request.
    predict_timeout_s: float = Field(default=30.0, gt=0)

    # Where `trainboard data download` (and the dashboard's download buttons) fetch mnist,
    # fashion-mnist and cifar10 from: empty means their public sources; a base URL replaces them with
    # URL/mnist/<file>, URL/fashion-mnist/<file> and URL/cifar10/cifar-10-binary.tar.gz (e.g. a
    # folder laid out like that, served over HTTP inside a network without internet access).
    dataset_mirror: str = Field(default="", pattern=r"^(https?://\S+)?$")

    # Ingest over HTTP (app/api/ingest.py). One artifact a trainer uploads may be this large
    # (413 when over, counted while it streams; the body-size middleware uses it too).
    max_artifact_bytes: int = Field(default=2 * 1024 * 1024 * 1024, ge=1)
    # How the local launcher's trainers reach the server's state: "db" (write the database) or
    # "http" (the ingest API with the run's token, as remote trainers do).
    trainer_store: str = Field(default="db", pattern="^(db|http)$")
    # The URL trainers use for the ingest API; empty means http://127.0.0.1:<port> (this host).
    server_url: str = ""

    # Accounts (app/auth). The key that signs session cookies: empty means a random one kept in
    # <data_dir>/secret_key (created on first start, readable only by its owner).
    secret_key: str = ""
    # A browser session lasts this long after logging in.
    session_max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    # Mark the session cookie Secure (sent over HTTPS only): set it behind an HTTPS proxy.
    secure_cookies: bool = False
    # On first start with no users: the name of the admin that TRAINBOARD_ADMIN_PASSWORD creates.
    admin_user: str = "admin"
    # On first start with no users: create the admin `admin_user` with this password.
    admin_password: str = ""
    # Host names the server answers to, comma-separated ("*": any). Empty: any once accounts exist,
    # and only loopback names (localhost, 127.0.0.1, ::1) while there are none, so that a web page
    # cannot reach an open server through DNS rebinding. `serve --insecure-no-auth` allows any.
    allowed_hosts: str = ""
    # How often a long answer (an SSE stream, a large download) re-checks its credential: a revoked
    # token, a disabled user or a changed password ends it within this time.
    auth_recheck_s: float = Field(default=10.0, gt=0)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'trainboard.db').resolve()}"

    @property
    def ingest_url(self) -> str:
        if self.server_url:
            return self.server_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def artifacts_dir(self) -> Path:
        return (self.data_dir / "artifacts").resolve()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing env."""
    return Settings()
