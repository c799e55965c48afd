# Airflow 3.3.2 with Stratoflow installed: the image every service of docker-compose.yaml runs.
#
#   docker compose build
#
# The project lives at /opt/stratoflow and is installed editable, because Stratoflow finds its
# include/ directory (site catalogue, templates, demo data) next to the package:
# docker-compose.yaml mounts ./include over /opt/stratoflow/include.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN mkdir -p /opt/stratoflow && chown airflow:0 /opt/stratoflow
USER airflow

COPY --chown=airflow:0 pyproject.toml /opt/stratoflow/
COPY --chown=airflow:0 stratoflow /opt/stratoflow/stratoflow
COPY --chown=airflow:0 include /opt/stratoflow/include

# apache-airflow is pinned on the same line so pip never moves the image's Airflow.
# [production] brings the celery provider and psycopg2; [cloud] and [fts3] the site
# backends' clients (openstacksdk, kubernetes, boto3, fts3), which every worker needs: a
# task may run on any of them. M2Crypto (fts3's) builds with swig and libssl-dev.
USER root
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        swig libssl-dev build-essential && rm -rf /var/lib/apt/lists/*
USER airflow
RUN pip install --no-cache-dir \
        "apache-airflow==3.3.2" \
        -e "/opt/stratoflow[production,cloud,fts3]"

# STRATOFLOW_HOME (plans, local site workdirs) is a named volume shared by every service.
# Created here, owned by airflow, so a fresh volume inherits the ownership.
RUN mkdir -p /opt/airflow/stratoflow/plans && chmod -R g+rwX /opt/airflow/stratoflow
