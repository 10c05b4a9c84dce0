//! Prints how many records a topic holds, read back from its earliest offsets:
//! `cargo run -p rill-kafka --example topic_count -- BROKERS TOPIC`.

fn main() -> Result<(), rill_kafka::Error> {
    let args: Vec<String> = std::env::args().collect();
    let (brokers, topic) = match args.as_slice() {
        [_, b, t] => (b.as_str(), t.as_str()),
        _ => {
            eprintln!("usage: topic_count BROKERS TOPIC");
            std::process::exit(2);
        }
    };
    let records = rill_kafka::admin::read_topic(brokers, topic)?;
    println!("{}", records.len());
    Ok(())
}
