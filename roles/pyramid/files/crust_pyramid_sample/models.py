from sqlalchemy import Column, DateTime, Integer, String, create_engine, func
from sqlalchemy.orm import declarative_base, sessionmaker

Base = declarative_base()


class Note(Base):
    __tablename__ = "notes"
    id = Column(Integer, primary_key=True)
    text = Column(String(500), nullable=False)
    created = Column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def make_engine(url):
    return create_engine(url, pool_pre_ping=True)


def make_session_factory(url):
    return sessionmaker(bind=make_engine(url))
