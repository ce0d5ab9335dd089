"""One typed settings object, read once at the edge (env vars POSTVAULT_*, optional TOML)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict


class Settings(BaseSettings):
    """Every key has a default that runs the embedded profile with no servers.

    Precedence: explicit arguments > environment (``POSTVAULT_<KEY>``) > the TOML file
    named by ``POSTVAULT_CONFIG`` (or ``./postvault.toml`` if present) > defaults.
    Engine URLs left empty are derived from ``data_dir``.
    """

    model_config = SettingsConfigDict(env_prefix="POSTVAULT_", extra="ignore")

    data_dir: Path = Field(
        default=Path("./var"),
        description="Folder for everything the embedded profile writes.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the catalogue: sqlite:///path or postgresql+psycopg://user:password@host:port/db. "
        "Empty: sqlite:///<data_dir>/catalogue.sqlite3.",
    )
    blobstore_url: str = Field(
        default="",
        description="file:///path or s3://bucket?endpoint=host:port&secure=true&region=r&object_lock=false&ca_certs=/path. "
        "Empty: file://<data_dir>/blobs.",
    )
    search_url: str = Field(
        default="",
        description="tantivy:///path or opensearch[s]://host:port[/prefix]?verify_certs=true&ca_certs=/path. "
        "Empty: tantivy://<data_dir>/index.",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker: redis://[:password@]host:port/db (or rediss://). Empty: background work runs in-process.",
    )
    smtp_host: str = Field(default="127.0.0.1", description="Address the SMTP journal listener binds.")
    smtp_port: int = Field(default=2525, description="Port of the SMTP journal listener.")
    smtp_hostname: str = Field(default="postvault.local", description="Name the listener announces in its greeting.")
    max_message_bytes: int = Field(
        default=50 * 1024 * 1024,
        description="Messages larger than this are refused with 552 (RFC 5321 section 4.5.3.1.10).",
    )
    smtp_max_connections: int = Field(
        default=100,
        ge=1,
        description="SMTP sessions open at once on the journal listener; more get 421 and retry later.",
    )
    smtp_max_connections_per_client: int = Field(
        default=20,
        ge=1,
        description="SMTP sessions open at once from one client address; more get 421 and retry later.",
    )
    smtp_max_inflight_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1,
        description="Bytes of messages being received or journaled at once; a message that would exceed it "
        "gets 451 and is retried (one message is always taken when it is the only one).",
    )
    journal_clients: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("127.0.0.0/8", "::1"),
        description="Addresses or networks (comma-separated) that may journal without SMTP AUTH. "
        "Others must authenticate over STARTTLS with a journal account.",
    )
    journal_accounts_file: Path | None = Field(
        default=None,
        description="File of journal accounts (name:argon2 hash), made with `postvault journal-account add`. "
        "Empty: <data_dir>/journal-accounts.",
    )
    smtp_tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate chain for STARTTLS on the journal listener. Empty: no STARTTLS, so no AUTH.",
    )
    smtp_tls_key: Path | None = Field(default=None, description="PEM private key of smtp_tls_cert.")
    log_level: str = Field(
        default="INFO",
        description="INFO: one line per message accepted or refused and per state change. DEBUG adds the SMTP dialogue.",
    )
    # Each batch is one search-engine commit: for tantivy a new segment, and merges later;
    # bench/README.md has the measurement behind the default.
    index_batch_size: int = Field(default=1000, description="Outbox entries indexed per batch.")
    index_poll_seconds: float = Field(default=0.5, description="How often an idle in-process indexer looks at the outbox.")
    index_workers: int = Field(
        default=0,
        description="Processes that parse messages for indexing. 0: one per CPU core.",
    )
    parse_timeout_seconds: float = Field(
        default=60.0,
        description="Longest one message may take to parse for indexing; a parse that takes longer is stopped "
        "and recorded as that message's failure. 0: no limit.",
    )
    max_attachment_bytes: int = Field(
        default=25 * 1024 * 1024,
        description="Attachments larger than this are listed but their text is not extracted.",
    )
    max_extracted_chars: int = Field(
        default=2_000_000,
        description="Text kept per attachment; guards the index against enormous parts.",
    )
    max_zip_members: int = Field(default=1000, description="Zip members listed per attached archive.")
    # A zip given to `postvault import` is usually a mailbox export, one message a member:
    # its members are journaled one by one and streamed, so their number costs no memory
    # beyond the zip's central directory. The ratio and budget guards apply to each member
    # as to attachments.
    import_max_zip_members: int = Field(default=1_000_000, description="Members read per zip given to `postvault import`.")
    max_zip_ratio: int = Field(
        default=100,
        description="Zip members with a worse compression ratio are treated as bombs; `postvault import` also reads "
        "at most this many times a zip's size from all its members together.",
    )
    max_nesting_depth: int = Field(default=8, description="Deepest nested message/rfc822 or zip that is opened.")
    max_mime_parts: int = Field(default=10_000, description="MIME parts examined per message; the rest are counted as a defect.")
    max_defects: int = Field(default=100, description="Distinct parse defects recorded per message.")
    extraction_memo_bytes: int = Field(
        default=32 * 1024 * 1024,
        description="Memory per indexing process for the text of recent PDF, DOCX and XLSX attachments, "
        "so a file that arrives again (forwarded, sent to many) is read once; 0 turns it off.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @field_validator("journal_clients", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @field_validator("journal_accounts_file", "smtp_tls_cert", "smtp_tls_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    # Derived engine URLs: kept as methods so an explicit setting always wins.
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'catalogue.sqlite3').resolve()}"

    def resolved_blobstore_url(self) -> str:
        return self.blobstore_url or f"file://{(self.data_dir / 'blobs').resolve()}"

    def resolved_search_url(self) -> str:
        return self.search_url or f"tantivy://{(self.data_dir / 'index').resolve()}"

    def resolved_journal_accounts_file(self) -> Path:
        return self.journal_accounts_file or self.data_dir / "journal-accounts"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads keys (without the POSTVAULT_ prefix, lower case) from a TOML file."""

    def _load(self) -> dict[str, Any]:
        named = os.environ.get("POSTVAULT_CONFIG")
        path = Path(named) if named else Path("postvault.toml")
        if not path.is_file():
            if named:
                raise FileNotFoundError(f"POSTVAULT_CONFIG names {path}, which does not exist")
            return {}
        with path.open("rb") as handle:
            data = tomllib.load(handle)
        return data.get("postvault", data)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._load().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        data = self._load()
        return {key: value for key, value in data.items() if key in self.settings_cls.model_fields}
