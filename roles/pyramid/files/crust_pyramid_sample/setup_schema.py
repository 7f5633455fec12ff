"""Create the missing tables (run at every boot, before the application: idempotent)."""

import os

from crust_pyramid_sample.models import Base, make_engine

if __name__ == "__main__":
    Base.metadata.create_all(make_engine(os.environ["DATABASE_URL"]))
