"""The strategy core: pure Python decisions and streaming transforms, no Airflow import.

One module per concept: ``spec`` (the workload), ``records`` (reading inputs), ``custom_ids``,
``requests`` (Messages API params), ``routing``, ``sampling``, ``sharding``, ``partition``,
``recovery``, ``cost``, ``health`` and ``report``. Operators call into these modules and keep only
the I/O that needs Airflow (connections, object storage, XCom).
"""
