"""Pure logic of the MSD Spark jobs (Python 3.9 syntax, Spark 3.5 APIs)."""
