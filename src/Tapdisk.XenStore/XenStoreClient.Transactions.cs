using System.Globalization;

namespace Tapdisk.XenStore;

public sealed partial class XenStoreClient
{
    public async Task<XenStoreTransaction> StartTransactionAsync(CancellationToken cancellationToken = default)
    {
        byte[] reply = await RequestAsync(XenStoreMessageType.TransactionStart, default, [0], "transaction", cancellationToken).ConfigureAwait(false);
        string text = TrimNul(reply);
        if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint id) || id == 0)
        {
            throw new XenStoreException("EIO", $"xenstore TRANSACTION_START: bad id '{text}'");
        }

        return new XenStoreTransaction(id);
    }

    /// <summary>Commits or aborts; false if the commit lost to a conflicting change (EAGAIN) and must be redone.</summary>
    public async Task<bool> EndTransactionAsync(XenStoreTransaction transaction, bool commit, CancellationToken cancellationToken = default)
    {
        try
        {
            await RequestAsync(XenStoreMessageType.TransactionEnd, transaction, XenStoreConnection.EncodeStrings(commit ? "T" : "F"), "transaction", cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (XenStoreException e) when (e.Errno == XenStoreErrors.EAGAIN && commit)
        {
            return false;
        }
    }

    /// <summary>Runs <paramref name="body"/> in a transaction and commits, redoing all of it on EAGAIN.</summary>
    public async Task TransactionAsync(Func<XenStoreTransaction, Task> body, CancellationToken cancellationToken = default) =>
        await TransactionAsync<bool>(async t => { await body(t).ConfigureAwait(false); return true; }, cancellationToken).ConfigureAwait(false);

    /// <summary>Runs <paramref name="body"/> in a transaction and commits, redoing all of it on EAGAIN.</summary>
    public async Task<T> TransactionAsync<T>(Func<XenStoreTransaction, Task<T>> body, CancellationToken cancellationToken = default)
    {
        for (int attempt = 1; ; attempt++)
        {
            XenStoreTransaction transaction = await StartTransactionAsync(cancellationToken).ConfigureAwait(false);
            T result;
            try
            {
                result = await body(transaction).ConfigureAwait(false);
            }
            catch (XenStoreException e) when (e.Errno == XenStoreErrors.EAGAIN && attempt < _options.TransactionAttempts)
            {
                // Some xenstoreds report the conflict on an operation inside the transaction, not only at commit.
                await AbortQuietlyAsync(transaction).ConfigureAwait(false);
                continue;
            }
            catch
            {
                await AbortQuietlyAsync(transaction).ConfigureAwait(false);
                throw;
            }

            if (await EndTransactionAsync(transaction, commit: true, cancellationToken).ConfigureAwait(false))
            {
                return result;
            }

            if (attempt >= _options.TransactionAttempts)
            {
                throw new XenStoreException("EAGAIN", $"xenstore transaction still conflicting after {attempt} attempts");
            }
        }
    }

    private async Task AbortQuietlyAsync(XenStoreTransaction transaction)
    {
        try
        {
            await EndTransactionAsync(transaction, commit: false, CancellationToken.None).ConfigureAwait(false);
        }
        catch (IOException)
        {
            // Teardown of a failed transaction: xenstored drops it with the connection anyway.
        }
    }
}
