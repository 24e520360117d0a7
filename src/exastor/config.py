"""Settings: defaults < TOML file < EXASTOR_* environment variables < command-line flags.

Validated once at start, with messages that say which setting is wrong and where it came from.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting is invalid; the message names it and its source."""


@dataclass
class Config:
    data: Path = Path("./data")
    host: str = "127.0.0.1"
    s3_port: int = 9000
    blob_port: int = 10000
    access_key: str | None = None
    secret_key: str | None = None
    account_name: str | None = None
    account_key: str | None = None
    # A second Blob account key (Azure's key2): Shared Key and SAS signed with either key are accepted,
    # so clients can move to one key while the other is replaced. Empty = none.
    account_key2: str = ""
    # Blob copies from outside the account fetch the source URL; private, loopback and link-local
    # addresses are refused unless inside one of these networks (CIDR, comma-separated). Empty = none.
    copy_source_networks: list[str] = field(default_factory=list)
    region: str = "us-east-1"
    extra_regions: list[str] = field(default_factory=list)  # SigV4 scope regions accepted besides `region`
    domains: list[str] = field(default_factory=lambda: ["localhost"])
    log_level: str = "warning"
    workers: int = 0            # gateway processes; 0 = one per CPU (at most 8)
    gc_interval: int = 300      # seconds between garbage-collection passes (0 = never)
    gc_grace: int = 600         # seconds a dead chunk or a sealed segment waits before it is reclaimed
    segment_size: int = 64 << 20  # bytes after which the open segment is sealed
    reduce_interval: int = 60   # seconds between similarity-delta reducer passes (0 = never)
    reduce_duty: float = 0.5    # share of one core the reducer may use
    meta_backup_interval: int = 300  # seconds between copies of the metadata database onto the drives (0 = never)
    # Journal every metadata commit onto m+1 drives before it is acknowledged, so a lost database
    # loses nothing (meta/journal.py). Needs the copies (meta_backup_interval > 0): they are its start.
    meta_journal: bool = True
    admin_port: int = 0         # /metrics and the web console; 0 = off (docs/operations.md, "Admin listener")
    admin_host: str = "127.0.0.1"
    metrics_token: str = ""     # /metrics needs "Authorization: Bearer TOKEN"; empty = loopback clients only
    # The metadata database: empty = the embedded SQLite under DATA/meta; a postgresql:// URL = a
    # shared PostgreSQL (many gateways, one namespace). PostgreSQL keeps its own durability (WAL,
    # base backups, a synchronous standby): the SQLite copies and journal are then off.
    meta_url: str = ""
    drives: list[str] = field(default_factory=list)  # drive directories; empty = DATA/drive0 (one drive)
    # write-buffer drives: they take only the open segments' replicas (small writes), never stripes
    buffer_drives: list[str] = field(default_factory=list)
    ec: str = ""                # erasure geometry K+M; empty = chosen by drive count (docs/reliability.md)
    # --- process, logs ---------------------------------------------------------------------------
    shutdown_timeout: float = 30.0  # seconds SIGTERM lets in-flight requests finish before cutting them
    log_format: str = "text"    # text | json (one JSON object per line, with the request id)
    access_log: str = ""        # "" = off, "-" = stdout, else a file: one JSON line per request
    # --- TLS and proxies (docs/security.md) ------------------------------------------------------
    tls_cert: str = ""          # PEM certificate (chain) for both endpoints; with tls_key
    tls_key: str = ""           # PEM private key
    tls: str = ""               # "self-signed": make DATA/tls/{cert,key}.pem on first start (development)
    trusted_proxies: list[str] = field(default_factory=list)  # addresses/networks whose X-Forwarded-* count
    # --- limits per worker process (hostile or broken clients) -----------------------------------
    max_header_bytes: int = 65536  # request line + headers; more is answered 431
    header_timeout: float = 30.0   # seconds for a request's head, from its first byte (408 after)
    body_timeout: float = 30.0     # window over which a body must arrive at body_min_rate (cut after)
    body_min_rate: int = 1024      # bytes/s a request body must average while the server waits for it
    max_connections: int = 4096    # open connections per worker; more get 503 SlowDown / ServerBusy
    max_connections_per_client: int = 0  # per worker and client address; 0 = no limit (behind a balancer)
    max_requests: int = 1024       # requests in flight per worker; more get 503 SlowDown / ServerBusy
    # Move the connections of tenants a QoS limit throttles to a worker of their own (gateway/handoff.py).
    # Off: every connection stays on the worker that accepted it (behind a balancer that pins them, or
    # to compare).
    qos_handoff: bool = True
    # --- secrets at rest (docs/security.md) ------------------------------------------------------
    key_command: str = ""       # prints the base64 master key (a KMS hook); empty = DATA/master.key
    # Encrypt new records (AES-256-GCM under per-store data keys wrapped by the master key) below the
    # reduction. None: on for a new store; an existing store keeps what it had (off before this existed).
    encrypt_at_rest: bool | None = None
    sources: dict[str, str] = field(default_factory=dict, repr=False)

    def validate(self) -> None:
        def where(name: str) -> str:
            return f"{name} (from {self.sources.get(name, 'default')})"

        for name in ("s3_port", "blob_port", "admin_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise ConfigError(f"{where(name)} must be a port number 0-65535, got {port!r}")
        if self.s3_port and self.s3_port == self.blob_port:
            raise ConfigError(f"{where('s3_port')} and {where('blob_port')} are both {self.s3_port}: S3 and Blob "
                              "need a port each (--blob-port 0 disables Blob)")
        if self.admin_port and self.admin_port in (self.s3_port, self.blob_port) and self.admin_host == self.host:
            raise ConfigError(f"{where('admin_port')} {self.admin_port} is already the S3 or Blob port")
        if self.metrics_token and (len(self.metrics_token) < 16 or not self.metrics_token.isprintable()
                                   or " " in self.metrics_token):
            raise ConfigError(f"{where('metrics_token')} must be at least 16 printable characters without spaces")
        if (self.access_key is None) != (self.secret_key is None):
            raise ConfigError("access_key and secret_key must be given together")
        if self.access_key is not None:
            if not 3 <= len(self.access_key) <= 128 or not self.access_key.isprintable() or " " in self.access_key:
                raise ConfigError(f"{where('access_key')} must be 3-128 printable characters without spaces")
            if len(self.secret_key or "") < 8:
                raise ConfigError(f"{where('secret_key')} must be at least 8 characters")
        if not (1 << 16) <= self.segment_size <= (1 << 32):
            raise ConfigError(f"{where('segment_size')} must be between 64 KiB and 4 GiB")
        if self.reduce_interval < 0 or not 0 < self.reduce_duty <= 1:
            raise ConfigError("reduce_interval must be >= 0 seconds and reduce_duty in (0, 1]")
        if self.gc_interval < 0 or self.gc_grace < 0 or self.meta_backup_interval < 0:
            raise ConfigError("gc_interval, gc_grace and meta_backup_interval must be >= 0 seconds")
        if self.account_name is not None and not (3 <= len(self.account_name) <= 24
                                                  and self.account_name.isalnum() and self.account_name.islower()):
            raise ConfigError(f"{where('account_name')} must be 3-24 lower-case letters and digits")
        for name in ("account_key", "account_key2"):
            if getattr(self, name):
                import base64
                import binascii
                try:
                    base64.b64decode(getattr(self, name), validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise ConfigError(f"{where(name)} must be base64 (as Azure account keys are)") from exc
        if self.log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
            raise ConfigError(f"{where('log_level')} must be one of critical, error, warning, info, debug")
        if self.ec:
            from exastor.engine.erasure import parse
            try:
                g = parse(self.ec)
            except ValueError as exc:
                raise ConfigError(f"{where('ec')}: {exc}") from exc
            if g.k + g.m > max(1, len(self.drives)):
                raise ConfigError(f"{where('ec')}: {g} needs {g.k + g.m} drives, {max(1, len(self.drives))} given "
                                  "(--drive PATH, repeated)")
        if self.meta_url and not self.meta_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{where('meta_url')} must be empty (embedded SQLite) or a postgresql:// URL")
        if self.shutdown_timeout < 0:
            raise ConfigError(f"{where('shutdown_timeout')} must be >= 0 seconds")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"{where('log_format')} must be text or json")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key must be given together")
        if self.tls not in ("", "self-signed"):
            raise ConfigError(f"{where('tls')} must be self-signed (or empty, with tls_cert and tls_key)")
        if self.tls and self.tls_cert:
            raise ConfigError("tls = self-signed and tls_cert/tls_key exclude each other")
        for name in ("tls_cert", "tls_key"):
            if getattr(self, name) and not Path(getattr(self, name)).expanduser().is_file():
                raise ConfigError(f"{where(name)}: no file {getattr(self, name)}")
        import ipaddress
        for net in self.copy_source_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ConfigError(f"{where('copy_source_networks')}: {net!r} is not a network") from exc
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ConfigError(f"{where('trusted_proxies')}: {proxy!r} is not an address or network") from exc
        if self.max_header_bytes < 1024:
            raise ConfigError(f"{where('max_header_bytes')} must be at least 1024")
        if self.header_timeout <= 0 or self.body_timeout <= 0 or self.body_min_rate < 0:
            raise ConfigError("header_timeout and body_timeout must be > 0 seconds, body_min_rate >= 0")
        if self.max_connections < 1 or self.max_requests < 1 or self.max_connections_per_client < 0:
            raise ConfigError("max_connections and max_requests must be >= 1, max_connections_per_client >= 0")
        if self.data.exists() and not self.data.is_dir():
            raise ConfigError(f"{where('data')}: {self.data} exists and is not a directory")


_FIELDS = {f.name: f for f in fields(Config) if f.name != "sources"}


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _FIELDS[name].type
    try:
        if name == "data":
            return Path(value).expanduser()
        if "bool" in str(kind):
            if isinstance(value, bool):
                return value
            word = str(value).strip().lower()
            if word not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(word)
            return word in ("1", "true", "yes", "on")
        if "float" in str(kind):
            return float(value)
        if "int" in str(kind):
            return int(value)
        if "list" in str(kind):
            return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} (from {source}): invalid value {value!r}") from exc


def load(config_file: str | None = None, overrides: dict[str, Any] | None = None,
         env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    cfg = Config()
    path = config_file or env.get("EXASTOR_CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        for name, value in doc.items():
            name = name.replace("-", "_")
            if name not in _FIELDS:
                raise ConfigError(f"config file {path}: unknown setting {name!r}")
            setattr(cfg, name, _coerce(name, value, path))
            cfg.sources[name] = path
    for name in _FIELDS:
        value = env.get(f"EXASTOR_{name.upper()}")
        if value is not None:
            setattr(cfg, name, _coerce(name, value, f"EXASTOR_{name.upper()}"))
            cfg.sources[name] = f"EXASTOR_{name.upper()}"
    for name, value in (overrides or {}).items():
        if value is not None:
            setattr(cfg, name, _coerce(name, value, "command line"))
            cfg.sources[name] = "command line"
    cfg.validate()
    if cfg.meta_url:  # the copies and the journal are of the SQLite file (services/metabackup.py)
        cfg.meta_backup_interval, cfg.meta_journal = 0, False
    return cfg
