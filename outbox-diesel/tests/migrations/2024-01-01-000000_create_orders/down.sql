DROP TABLE diesel_orders;
