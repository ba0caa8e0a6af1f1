"""A local Cloud Storage server for the tests: gcp-storage-emulator, with object downloads
answered with their generation headers as real GCS answers them.

    python tests/gcs_server.py PORT BUCKET       (in-memory, on 127.0.0.1)

The emulator leaves x-goog-generation out of media downloads; tensorstore (Orbax's OCDBT
checkpoints) then takes the object's generation for 0 and refuses its next conditional read
("Malformed StorageGeneration"). The emulator also ignores ifGenerationMatch on uploads; here
a media/multipart upload whose condition fails is answered 412 as GCS does (the workdir lock
relies on it), checked and written under one lock.
"""
import sys
import threading
from http import HTTPStatus

from gcp_storage_emulator.handlers import objects  # patched before the server module takes it

_download = objects.download


def _download_with_generation(request, response, storage, *args, **kwargs):
  _download(request, response, storage, *args, **kwargs)
  if response.status not in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
    return
  try:
    obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
  except Exception:  # leave the response as the emulator made it
    return
  present = {k.lower() for k in response._headers}
  for header, field, default in (("x-goog-generation", "generation", None),
                                 ("x-goog-metageneration", "metageneration", "1")):
    if header not in present and (obj.get(field) or default):
      response[header] = str(obj.get(field) or default)


objects.download = _download_with_generation

_insert = objects.insert
_conditional = threading.Lock()


def _insert_if_generation_matches(request, response, storage, *args, **kwargs):
  wanted = request.query.get("ifGenerationMatch")
  if not wanted:
    return _insert(request, response, storage, *args, **kwargs)
  name = request.query.get("name", [None])[0]
  if name is None and isinstance(request.data, dict):
    name = (request.data.get("meta") or {}).get("name")
  with _conditional:
    try:
      current = storage.get_file_obj(request.params["bucket_name"], name).get("generation", "0")
    except Exception:  # absent
      current = "0"
    if str(current) != wanted[0]:
      response.status = HTTPStatus.PRECONDITION_FAILED
      response.json({"error": {"code": 412, "message": "At least one of the pre-conditions you "
                                                       "specified did not hold."}})
      return
    return _insert(request, response, storage, *args, **kwargs)


objects.insert = _insert_if_generation_matches

if __name__ == "__main__":
  from gcp_storage_emulator import __main__ as emulator
  port, bucket = sys.argv[1], sys.argv[2]
  emulator.main(["start", "--host", "127.0.0.1", "--port", port, "--default-bucket", bucket, "-q",
                 "--in-memory"])
