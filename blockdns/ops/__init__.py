"""Operations: statistics, the query log, metrics, the admin API and dashboard."""
