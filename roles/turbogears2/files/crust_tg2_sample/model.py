"""The sample's model: notes, in PostgreSQL through SQLAlchemy."""

import datetime as dt
import os

from sqlalchemy import DateTime, Integer, String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(500))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def as_dict(self):
        return {"id": self.id, "text": self.text, "created": self.created.isoformat() if self.created else None}


_sessions = None


def sessions():
    """The session factory, made on first use (the URL is read from the environment)."""
    global _sessions
    if _sessions is None:
        engine = create_engine(os.environ["CRUST_TG2_DATABASE_URL"], pool_pre_ping=True)
        _sessions = sessionmaker(bind=engine, expire_on_commit=False)
    return _sessions


def setup_schema():
    """Create the tables that do not exist yet (idempotent: safe at every boot)."""
    Base.metadata.create_all(sessions().kw["bind"])


def list_notes(session: Session):
    return session.scalars(select(Note).order_by(Note.id)).all()
