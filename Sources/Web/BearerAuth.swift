import Foundation
import Hummingbird

/// Every request carries the token: `Authorization: Bearer <token>` (Prometheus, scripts),
/// or the `kiln_token` cookie a browser got by opening the page once as `/?token=<token>`
/// (EventSource cannot set headers). Without a token configured everything passes: the
/// port is on loopback (HTTPBind.check).
struct BearerAuth<Context: RequestContext>: RouterMiddleware {
    let token: String?
    static var cookieName: String { "kiln_token" }

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    )
        async throws -> Response
    {
        guard let token else { return try await next(request, context) }
        if let header = request.headers[.authorization], header.hasPrefix("Bearer "),
            Self.same(String(header.dropFirst("Bearer ".count)), token)
        {
            return try await next(request, context)
        }
        if let cookie = request.cookies[Self.cookieName], Self.same(cookie.value, token) {
            return try await next(request, context)
        }
        // The page opened with the token in its URL: set the cookie, then drop the token
        // from the address bar (and from the history) by a redirect.
        if request.uri.path == "/", let given = request.uri.queryParameters["token"], Self.same(String(given), token) {
            var response = Response.redirect(to: "/", type: .found)
            response.setCookie(
                Cookie(name: Self.cookieName, value: token, path: "/", httpOnly: true, sameSite: .strict))
            return response
        }
        return Response(
            status: .unauthorized, headers: [.wwwAuthenticate: "Bearer realm=\"kiln\"", .contentType: "text/plain"],
            body: .init(byteBuffer: ByteBuffer(string: "401: this Kiln port needs its bearer token\n")))
    }

    /// Constant-time comparison: the time taken does not tell how much of a guess was right.
    static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}
