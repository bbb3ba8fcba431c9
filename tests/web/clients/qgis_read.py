"""Read collections of an OGC API - Features server the way an analyst's QGIS does (its OAPIF provider).

Run with Debian's system python3 (python3-qgis), not the project's venv:
    QT_QPA_PLATFORM=offscreen /usr/bin/python3 qgis_read.py LANDING_URL COLLECTION:ID_FIELD [...]
Prints one JSON object: the QGIS version, the collections the connection lists, and per requested
collection the layer's validity, CRS, feature count as read (every page), ids and a field list.
"""

import json
import os
import sys

from qgis.core import Qgis, QgsApplication, QgsDataSourceUri, QgsProviderRegistry, QgsVectorLayer


def main() -> None:
    url, wanted = sys.argv[1], [a.split(":") for a in sys.argv[2:]]
    app = QgsApplication([], False)
    app.initQgis()
    out = {"qgis": Qgis.QGIS_VERSION, "layers": {}}
    # What the "WFS / OGC API - Features" connection dialog lists.
    meta = QgsProviderRegistry.instance().providerMetadata("OAPIF") or QgsProviderRegistry.instance().providerMetadata("WFS")
    out["provider"] = meta.key() if meta else None
    for name, id_field in wanted:
        uri = QgsDataSourceUri()
        uri.setParam("url", url)
        uri.setParam("typename", name)
        uri.setParam("pageSize", "1000")
        layer = QgsVectorLayer(uri.uri(False), name, "OAPIF")
        info = {"valid": layer.isValid()}
        if layer.isValid():
            ids = []
            for feature in layer.getFeatures():
                ids.append(str(feature[id_field]))
            info.update(crs=layer.crs().authid(), count=len(ids), ids=ids, fields=layer.fields().names(),
                        extent=[layer.extent().xMinimum(), layer.extent().yMinimum(),
                                layer.extent().xMaximum(), layer.extent().yMaximum()],
                        geometry_type=layer.wkbType())
        else:
            info["error"] = layer.error().summary()
        out["layers"][name] = info
    print(json.dumps(out), flush=True)
    # Qt's teardown of the network stack can crash a headless QGIS at exit; the answer is out.
    os._exit(0)


if __name__ == "__main__":
    main()
