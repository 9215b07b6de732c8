import FuzzSupport
import TailgateCore

/// libFuzzer target: the NDJSON record decoder, the text line decoder and the JSON parser, on any bytes.
/// Every input must give a record or a rejection (never a trap); a decoded record must encode.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecordDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var repeated = RecordDecoder.RepeatedValues()
    if let record = try? RecordDecoder.decodeJSONLine(bytes, reusing: &repeated) {
        var builder = BatchBuilder(firstSeq: 1, capacity: 256)
        builder.append(record, timestamp: record.timestamp ?? Timestamp(microseconds: 0))
        _ = builder.finish()
    }
    _ = try? RecordDecoder.decodeTextLine(bytes)
    _ = try? JSONParser.parse(bytes)
    return 0
}

@_cdecl("FuzzRecordDecoder_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzRecordDecoder)
}
