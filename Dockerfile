# The project's Airflow image: apache/airflow 3.3.2 on Python 3.11 (the Python constraints.txt was
# frozen for) with the pinned requirements and the project installed editable, so dags/, plugins/
# and include/ mounted over /opt/claude-batch are what every component imports.
FROM apache/airflow:3.3.2-python3.11

USER airflow
WORKDIR /opt/claude-batch
COPY --chown=airflow:0 requirements.txt constraints.txt pyproject.toml ./
RUN pip install --no-cache-dir setuptools==84.2.1 \
 && pip install --no-cache-dir -r requirements.txt -c constraints.txt
COPY --chown=airflow:0 dags ./dags
COPY --chown=airflow:0 plugins ./plugins
COPY --chown=airflow:0 include ./include
RUN pip install --no-cache-dir --no-build-isolation --no-deps -e .
WORKDIR /opt/airflow
