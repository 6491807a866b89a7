import XCTest
import KilnProtocol
final class KilnProtocolPlaceholderTests: XCTestCase { func testLinks() {} }
