"""python -m crust_tg2_sample.setup_schema: create the tables that are missing (idempotent)."""

from crust_tg2_sample import model

if __name__ == "__main__":
    model.setup_schema()
    print("schema ready")
