//! The feed role's tests: the book's feed decisions (`book_rules`), the supervisor over real
//! WebSocket connections (`websocket`), and the UOF-style adapter over the real RabbitMQ on
//! 127.0.0.1:5672 (`amqp`; TLS, virtual hosts, routing-key filters and a missing exchange in
//! `amqp_connection`; producers down and recovering one by one in `amqp_producers`), and the UOF provider's HTTP API (recovery, names) against a local
//! stand-in of the provider, in the clear and over https (`uof_api`); a restart on the same data
//! directory, a UOF provider's markets held until its recovery and a JSON provider's not
//! (`restart`); which producers a UOF provider waits for at a start, from its producers list
//! (`producers_list`); `tls` holds the test CA and the TLS endpoint both TLS suites use.

mod amqp;
mod amqp_connection;
mod amqp_producers;
mod book_rules;
mod producers_list;
mod restart;
mod support;
mod tls;
mod uof_api;
mod uof_rules;
mod websocket;
