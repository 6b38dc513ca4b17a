"""Developer tooling, apart from the Airflow runtime: embedded services, the local Airflow UI, the demo and the features-only song generator."""
