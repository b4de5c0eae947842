// Package sys holds the Linux details ringo is built on: anonymous memory
// files, the doubled ring mapping, eventfd and epoll. Nothing here knows what
// a record is; the ringo package gives these primitives their meaning.
package sys
