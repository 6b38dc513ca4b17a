"""The EMR Serverless target."""
