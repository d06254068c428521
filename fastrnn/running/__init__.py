"""How batches of training runs are computed: what a finished run comes back as and the thread
plumbing (``runs``, below :mod:`fastrnn.backends`), the memory a batch needs (``memory``), and
the executors that compute a batch on this machine's threads or a Dask cluster (``executors``,
``dask_executor``)."""
