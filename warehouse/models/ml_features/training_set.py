"""ml_features.training_set: the point-in-time training set, one row per purchase.

Features come from the SAME definitions the detector uses online
(``shopsentry.features.offline_features`` replays the events in time order, so each
purchase sees only what happened before it); no feature is re-implemented in SQL, so
training and serving cannot drift apart. Each row carries its eventual truth
(``is_fraud``: the analyst's verdict, else the chargeback label) and ``label_known_at``,
when that truth became known, so the trainer can use only labels known at its cut-off.

Built by weekly_model_retrain (tag ``ml``), not by the hourly ETL.
"""


def _arrow(relation):
    table = relation.arrow()
    # Newer DuckDB returns a RecordBatchReader from .arrow(); older ones a Table.
    return table.read_all() if hasattr(table, "read_all") else table


def model(dbt, session):
    dbt.config(materialized="table", tags=["ml"])

    import pyarrow as pa

    from shopsentry.features import FEATURE_NAMES, events_from_table, offline_features
    from shopsentry.features.offline import known_labels

    events = _arrow(dbt.ref("feature_events")).sort_by(
        [("occurred_at", "ascending"), ("event_id", "ascending")]
    )
    orders = _arrow(
        dbt.ref("fct_orders").select(
            "event_id, is_confirmed_fraud, fraud_scenario, is_labelled, label_known_at, reviewed_at"
        )
    )
    # Entity fraud features learn from the labels as the detector does, each from the
    # moment it was known (the first of the chargeback and the analyst's review).
    session.register("_label_source", orders)
    truth = session.sql(
        "select event_id, is_confirmed_fraud as is_fraud,"
        " least(label_known_at, reviewed_at) as known_at"
        " from _label_source where is_labelled or reviewed_at is not null"
    )
    frame = offline_features(events_from_table(events), labels=known_labels(_arrow(truth)))
    columns = {
        "event_id": pa.array(list(frame.event_ids), pa.string()),
        "user_id": pa.array(list(frame.user_ids), pa.string()),
        "order_id": pa.array(list(frame.order_ids), pa.string()),
        "amount": pa.array(list(frame.amounts), pa.float64()),
        "occurred_at": pa.array(list(frame.occurred_at)).cast(pa.timestamp("us")),
    }
    for i, name in enumerate(FEATURE_NAMES):
        if name not in columns:
            columns[name] = pa.array(frame.X[:, i], pa.float64())
    features = pa.table(columns)
    session.register("_training_features", features)
    session.register("_training_labels", orders)
    # A feature named like a key column ("amount": the purchase amount) is that column.
    base = {
        "event_id",
        "user_id",
        "order_id",
        "amount",
        "occurred_at",
        "is_fraud",
        "scenario",
        "label_known_at",
    }
    feature_list = ", ".join(f'f."{name}"' for name in FEATURE_NAMES if name not in base)
    relation = session.sql(
        f"""
        select
            f.event_id,
            f.user_id,
            f.order_id,
            f.amount,
            f.occurred_at,
            coalesce(l.is_confirmed_fraud, false) as is_fraud,
            l.fraud_scenario as scenario,
            -- The truth is known from the first of the chargeback and the review.
            case
                when l.is_labelled or l.reviewed_at is not null
                    then least(l.label_known_at, l.reviewed_at)
            end as label_known_at,
            {feature_list}
        from _training_features as f
        left join _training_labels as l on l.event_id = f.event_id
        order by f.occurred_at, f.event_id
        """
    )
    return _arrow(relation)
