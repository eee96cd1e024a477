"""The Claude batch UI plugin: run history and run pages in the Airflow UI, and the re-run endpoint."""
