// Package s3 serves Cairn's namespace over the Amazon S3 API: Handler is
// an http.Handler over a client.Client, and Server runs one on a listener
// for cmd/s3gateway and `dfs up --s3`.
//
// # Mapping
//
// A bucket is a directory at the root of the namespace; an object's key is
// the path below it, its "/" separating directories. A key that cannot
// name a path (an empty, "." or ".." segment, a NUL byte, invalid UTF-8)
// is refused with InvalidArgument and is never resolved. Objects are the
// regular files of a bucket's tree; directories appear only as the
// prefixes of the keys below them, and an object's parent directories are
// made by its PUT and removed, once empty, by its DELETE. Requests address
// buckets path-style ("/bucket/key"), or virtual-hosted-style
// ("bucket.DOMAIN/key") when Config.Domain is set.
//
// Each object's S3 attributes (ETag, the standard content headers and the
// x-amz-meta-* user metadata) live in one extended attribute, "user.s3",
// as MIME header text, so that a HEAD reads them with one master call and
// a PUT writes them with one. The ETag is recorded with the size and the
// modification time it was computed for: a file changed through another
// front end (the FUSE mount) gets a fallback ETag instead of a stale MD5.
//
// # Atomic visibility
//
// Every write (PutObject, CopyObject, UploadPart, CompleteMultipartUpload)
// builds its file under the bucket's hidden directory ".cairn-multipart",
// sets its attributes and then renames it into place, so a reader sees
// either the old object or the complete new one, and a client that goes
// away mid-upload leaves nothing visible. A multipart upload keeps its
// parts there as ordinary files, ".cairn-multipart/<upload ID>/<part
// number>", and Complete composes them with client.Client.Concat, which
// moves the parts' slices into the object without copying their bytes.
// The object remembers its parts' sizes, so GET and HEAD with ?partNumber
// serve one part (an object written in one piece is its own part 1).
// The hidden directory is never listed and is refused as a key.
//
// # Authentication
//
// Requests are signed with AWS Signature Version 4, in the Authorization
// header or in the query string (presigned URLs), with the payload either
// hashed (x-amz-content-sha256), unsigned, or sent aws-chunked with
// per-chunk signatures and trailing checksums. The signature's region is
// taken from its own scope, so clients configured for any region work.
// Anonymous requests are refused unless Config.AllowAnonymous is set.
//
// # Sub-resources
//
// Of S3's sub-resources (the "?acl", "?versioning", "?tagging", …
// queries), the gateway serves the reads clients make routinely and
// whose answer holds for every bucket and object: GET ?location, ?acl
// (the owner has full control), ?versioning (never enabled) and
// ?tagging (no tags). Every other request on a sub-resource is answered
// NotImplemented, and is never taken for a request on the bucket or
// object itself.
//
// Every error is S3's XML error document with the matching HTTP status
// and the request's ID (also in the x-amz-request-id header).
package s3
