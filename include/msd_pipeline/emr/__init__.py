"""Running the pipeline on Amazon EMR: request builders, code shipping, S3 staging,
the Mongo secret, step logs, the cost estimate and the EMR target of the task graph."""
