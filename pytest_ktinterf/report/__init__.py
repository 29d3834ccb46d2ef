"""What people read after a run: the JSON record (``record``), the text tables (``text``) and
the plots (``plots``), all rendered from the record so that merged xdist records render alike."""
