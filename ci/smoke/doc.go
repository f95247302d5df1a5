// Package smoke boots images as VMs and probes them (multi-user reached, HTTP pages, MariaDB round trips) until a
// deadline, and produces the verdict that is signed as an attestation and checked by promotion.
package smoke
