"""Apache Airflow provider for Constant Contact: export Parquet segments to contact lists."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airflow-provider-constantcontact")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
