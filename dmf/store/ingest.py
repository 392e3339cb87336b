"""(Stub: streaming ingest of npy, csv/tsv, mtx, npz.)"""


def ingest(src, url, *, format=None, **opts):
    raise NotImplementedError
