"""Airflow plugin: the "ColdCopy DB health" page in the UI's nav (Browse), served by a FastAPI app at
/coldcopy-health/ (JSON at /coldcopy-health/api), behind Airflow's authentication. See coldcopy.health_page."""

from airflow.plugins_manager import AirflowPlugin

from coldcopy.health_page import create_app

URL_PREFIX = "/coldcopy-health"


class ColdCopyHealthPlugin(AirflowPlugin):
    name = "coldcopy_health"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "ColdCopy DB health"}]
    external_views = [{
        "name": "ColdCopy DB health",
        "href": f"{URL_PREFIX}/",
        "destination": "nav",
        "category": "browse",
        "url_route": "coldcopy-health",
    }]
