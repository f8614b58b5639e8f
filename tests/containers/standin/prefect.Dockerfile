# Stand-in for prefecthq/prefect:3.9.1-python3.11, built by ../standin_bases.sh only when the
# real image cannot be pulled: Prefect on the python:3.11-slim image (real or stand-in), with
# the project's pins (constraints.txt, from requirements.lock) for Prefect's dependencies.
FROM python:3.11-slim

COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir -c /tmp/constraints.txt prefect==3.9.1 \
    && rm /tmp/constraints.txt

ENV PYTHONUNBUFFERED=1
CMD ["prefect", "version"]
