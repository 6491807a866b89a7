import XCTest
import ZeroMQ
final class ZeroMQPlaceholderTests: XCTestCase { func testLinks() {} }
