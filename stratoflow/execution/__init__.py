"""Run-time logic the operators call: plain Python, no airflow imports."""
