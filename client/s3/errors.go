package s3

import (
	"context"
	"encoding/xml"
	"errors"
	"io/fs"
	"net/http"
	"syscall"
)

// apiError is an S3 error: the code and status S3 uses for it and a
// message for people.
type apiError struct {
	Code    string
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(code string, status int, msg string) *apiError {
	return &apiError{Code: code, Status: status, Message: msg}
}

// The errors the gateway answers with, under S3's codes.
var (
	errAccessDenied          = errorf("AccessDenied", http.StatusForbidden, "Access Denied.")
	errBadDigest             = errorf("BadDigest", http.StatusBadRequest, "The Content-MD5 or checksum you specified did not match what was received.")
	errBucketNotEmpty        = errorf("BucketNotEmpty", http.StatusConflict, "The bucket you tried to delete is not empty.")
	errBucketExists          = errorf("BucketAlreadyOwnedByYou", http.StatusConflict, "Your previous request to create the named bucket succeeded and you already own it.")
	errEntityTooLarge        = errorf("EntityTooLarge", http.StatusBadRequest, "Your proposed upload exceeds the maximum allowed object size.")
	errEntityTooSmall        = errorf("EntityTooSmall", http.StatusBadRequest, "Your proposed upload is smaller than the minimum allowed object size.")
	errIncompleteBody        = errorf("IncompleteBody", http.StatusBadRequest, "You did not provide the number of bytes specified by the Content-Length HTTP header.")
	errInternal              = errorf("InternalError", http.StatusInternalServerError, "We encountered an internal error. Please try again.")
	errInvalidAccessKey      = errorf("InvalidAccessKeyId", http.StatusForbidden, "The AWS access key ID you provided does not exist in our records.")
	errInvalidBucketName     = errorf("InvalidBucketName", http.StatusBadRequest, "The specified bucket is not valid.")
	errInvalidDigest         = errorf("InvalidDigest", http.StatusBadRequest, "The Content-MD5 or checksum you specified is not valid.")
	errInvalidPart           = errorf("InvalidPart", http.StatusBadRequest, "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified ETag might not have matched the part's ETag.")
	errInvalidPartOrder      = errorf("InvalidPartOrder", http.StatusBadRequest, "The list of parts was not in ascending order. The parts list must be specified in order by part number.")
	errInvalidPartNumber     = errorf("InvalidPartNumber", http.StatusRequestedRangeNotSatisfiable, "The requested partnumber is not satisfiable.")
	errInvalidRange          = errorf("InvalidRange", http.StatusRequestedRangeNotSatisfiable, "The requested range is not satisfiable.")
	errKeyTooLong            = errorf("KeyTooLongError", http.StatusBadRequest, "Your key is too long.")
	errMalformedXML          = errorf("MalformedXML", http.StatusBadRequest, "The XML you provided was not well-formed or did not validate against our published schema.")
	errMetadataTooLarge      = errorf("MetadataTooLarge", http.StatusBadRequest, "Your metadata headers exceed the maximum allowed metadata size.")
	errMethodNotAllowed      = errorf("MethodNotAllowed", http.StatusMethodNotAllowed, "The specified method is not allowed against this resource.")
	errMissingContentLength  = errorf("MissingContentLength", http.StatusLengthRequired, "You must provide the Content-Length HTTP header.")
	errNoSuchBucket          = errorf("NoSuchBucket", http.StatusNotFound, "The specified bucket does not exist.")
	errNoSuchKey             = errorf("NoSuchKey", http.StatusNotFound, "The specified key does not exist.")
	errNoSuchUpload          = errorf("NoSuchUpload", http.StatusNotFound, "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed.")
	errNotImplemented        = errorf("NotImplemented", http.StatusNotImplemented, "A header or query you provided implies functionality that is not implemented.")
	errPreconditionFailed    = errorf("PreconditionFailed", http.StatusPreconditionFailed, "At least one of the preconditions you specified did not hold.")
	errRequestExpired        = errorf("AccessDenied", http.StatusForbidden, "Request has expired.")
	errSignatureMismatch     = errorf("SignatureDoesNotMatch", http.StatusForbidden, "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
	errTimeSkewed            = errorf("RequestTimeTooSkewed", http.StatusForbidden, "The difference between the request time and the server's time is too large.")
	errContentSHA256Mismatch = errorf("XAmzContentSHA256Mismatch", http.StatusBadRequest, "The provided 'x-amz-content-sha256' header does not match what was computed.")
	errKeyConflict           = errorf("KeyConflict", http.StatusConflict, "The key conflicts with an existing object or prefix: a key cannot be both an object and the prefix of another object's directory.")
	errServiceUnavailable    = errorf("ServiceUnavailable", http.StatusServiceUnavailable, "The service is temporarily unable to handle the request.")
)

// invalidArgument is InvalidArgument with a message saying what was wrong.
func invalidArgument(msg string) *apiError {
	return errorf("InvalidArgument", http.StatusBadRequest, msg)
}

// invalidRequest is InvalidRequest with a message saying what was wrong.
func invalidRequest(msg string) *apiError {
	return errorf("InvalidRequest", http.StatusBadRequest, msg)
}

// malformedAuth is AuthorizationHeaderMalformed (or, for presigned
// URLs, AuthorizationQueryParametersError) saying what was wrong.
func malformedAuth(query bool, msg string) *apiError {
	if query {
		return errorf("AuthorizationQueryParametersError", http.StatusBadRequest, msg)
	}
	return errorf("AuthorizationHeaderMalformed", http.StatusBadRequest, msg)
}

// errorResponse is S3's XML error document.
type errorResponse struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource,omitempty"`
	RequestID string   `xml:"RequestId"`
	HostID    string   `xml:"HostId"`
}

// objectErr converts a file-system error on an object (or part) into the
// S3 error a client expects. missing is the answer for ENOENT.
func objectErr(err error, missing *apiError) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return missing
	case errors.Is(err, fs.ErrPermission):
		return errAccessDenied
	case errors.Is(err, syscall.ENAMETOOLONG):
		return errKeyTooLong
	case errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, fs.ErrExist):
		return errKeyConflict
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return errorf("InsufficientStorage", http.StatusInsufficientStorage, "The cluster has no room left for the object.")
	case errors.Is(err, syscall.EFBIG):
		return errEntityTooLarge
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.EAGAIN):
		return errServiceUnavailable
	}
	return errInternal
}
