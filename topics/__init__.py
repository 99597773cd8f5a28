"""What travels on the Kafka topics: topic declarations and creation, the line protocol
(:mod:`topics.line_protocol`: parsing to Arrow and rendering back), the wire formats of batches
and rejected lines (:mod:`topics.wire`), the checks of parsed rows against the catalog
(:mod:`topics.validate`) and the subscription filter language."""
