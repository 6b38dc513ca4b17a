"""MSD Spark jobs' library (Python 3.9 syntax, Spark 3.5 APIs; zipped and shipped to EMR)."""
