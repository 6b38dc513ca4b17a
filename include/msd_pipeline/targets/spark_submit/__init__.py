"""The spark-submit target: spark-submit to any master (``local[*]``, a standalone cluster
such as docker-compose's, YARN); files on paths every Spark process can read."""
